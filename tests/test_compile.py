"""torch.compile as an option: compiled outputs equal eager ones; where it is switched on (the
training module, Predictor, gmrw-track); a clear error without a C++ compiler."""

from __future__ import annotations

import pytest
import torch
from reference_parity import ZERO_GRAD_PARAMS  # analytically zero gradients: compared by size only

from gmrw.cli.track import build_parser
from gmrw.losses import walk_loss
from gmrw.models import GMRW, compile_network, compiler_problem, is_compiled
from gmrw.tracking import Predictor
from gmrw.training.module import GMRWLitModule

SMALL_NET = {"feature_channels": 32, "num_transformer_layers": 2, "ffn_dim_expansion": 2}


@pytest.mark.slow  # compiling forward and backward graphs: ~1 min on 2 busy cores
def test_compiled_flow_loss_and_gradients_equal_eager():
    if compiler_problem() is not None:
        pytest.skip(compiler_problem())
    torch.manual_seed(0)
    eager = GMRW(**SMALL_NET)
    compiled = GMRW(**SMALL_NET)
    compiled.load_state_dict(eager.state_dict())
    compile_network(compiled)
    assert is_compiled(compiled) and not is_compiled(eager)
    assert list(compiled.state_dict()) == list(eager.state_dict())  # checkpoints keep their key names

    g = torch.Generator().manual_seed(1)
    src, dst = torch.rand(2, 1, 3, 32, 32, generator=g) * 255
    with torch.no_grad():
        expected = eager.eval().flow(src, dst)
        got = compiled.eval().flow(src, dst)
    assert got.shape == expected.shape == (1, 2, 32, 32)
    # float noise: inductor fuses and reorders sums (measured ~4e-5 of the flow's magnitude)
    assert (got - expected).abs().max() <= 1e-3 * expected.abs().max()

    frames = torch.rand(1, 4, 3, 32, 32, generator=g) * 255
    affine = torch.tensor([[[0.85, 0.03, 0.08], [-0.03, 0.85, -0.05]]])
    losses = []
    for model in (eager.train(), compiled.train()):
        loss = walk_loss(model, frames, affine, 0.5)["loss"]
        loss.backward()
        losses.append(loss.item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        assert b.grad is not None, name
        if name in ZERO_GRAD_PARAMS:
            assert a.grad.norm() < 1e-5 and b.grad.norm() < 1e-5, name
            continue
        error = ((b.grad - a.grad).abs().max() / a.grad.abs().max()).item()
        assert error < 1e-3, (name, error)


def test_training_module_compiles_when_set_up():
    common = {"net": SMALL_NET, "optimizer": {"lr": 1e-4, "weight_decay": 0.0}, "smoothness_curriculum": {}}
    plain = GMRWLitModule(**common)
    plain.setup("test")
    assert not is_compiled(plain.model) and plain.hparams["compile"] is False
    if compiler_problem() is not None:
        pytest.skip(compiler_problem())
    module = GMRWLitModule(**common, compile=True)
    keys = list(module.state_dict())
    module.setup("test")
    module.setup("test")  # validate then fit: the second setup must not wrap it again
    assert is_compiled(module.model) and module.hparams["compile"] is True
    assert list(module.state_dict()) == keys


def test_predictor_and_gmrw_track_compile_option():
    assert build_parser().parse_args(["clip.mp4", "--compile"]).compile is True
    assert build_parser().parse_args(["clip.mp4"]).compile is False
    assert not is_compiled(Predictor(GMRW(**SMALL_NET), "cpu").model)
    if compiler_problem() is not None:
        pytest.skip(compiler_problem())
    assert is_compiled(Predictor(GMRW(**SMALL_NET), "cpu", compile=True).model)


def test_no_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("gmrw.models.compile.shutil.which", lambda name: None)
    problem = compiler_problem()
    assert problem is not None and "C++ compiler" in problem
    with pytest.raises(RuntimeError, match="C\\+\\+ compiler"):
        compile_network(GMRW(**SMALL_NET))
    with pytest.raises(ValueError, match="compile=True: .*C\\+\\+ compiler"):
        Predictor(GMRW(**SMALL_NET), "cpu", compile=True)
