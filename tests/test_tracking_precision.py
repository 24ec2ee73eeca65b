"""Tracking in bfloat16 (``gmrw.track(..., precision=...)``): the global match's encoder and
transformer under autocast, the matching, the read-outs and the sub-cell step in float32; the
names and ``auto``'s rule; the same option through the Predictor, the online session and
``gmrw-track``."""

from __future__ import annotations

import pytest
import torch

from gmrw.choices import ConfigError
from gmrw.models import GMRW
from gmrw.models.cpu import fast_bf16_matmul
from gmrw.tracking import Predictor, track
from gmrw.tracking.precision import compute_dtype

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FINE = {"channels": 8, "radius": 2, "pixel_channels": 4, "pixel_radius": 1}
QUERIES = torch.tensor([[[0.0, 10.0, 12.0], [0.0, 20.5, 30.25], [1.0, 30.0, 20.0]]])  # (t, y, x)


def tiny(fine_match=FINE) -> GMRW:
    torch.manual_seed(0)
    return GMRW(feature_channels=32, num_transformer_layers=1, fine_match=fine_match).eval()


def drifting_video(frames: int = 4, size: tuple[int, int] = (40, 48)) -> torch.Tensor:
    """(1, T, H, W, 3) in [0, 255]: a smooth random texture moving right by 2 px a frame."""
    g = torch.Generator().manual_seed(0)
    h, w = size
    base = torch.nn.functional.interpolate(
        torch.rand(1, 3, h // 4, w // 4 + 8, generator=g), size=(h, w + 32)
    )
    shots = [base[..., 2 * t : 2 * t + w] for t in range(frames)]
    return (torch.cat(shots).permute(0, 2, 3, 1) * 255).unsqueeze(0)


def test_precision_names():
    assert compute_dtype("fp32", "cpu") is None
    assert compute_dtype("bf16", "cpu") is torch.bfloat16
    # auto: bf16 only where this CPU's bf16 matmuls are fast (AMX); the probe decides
    assert compute_dtype("auto", "cpu") is (torch.bfloat16 if fast_bf16_matmul() else None)
    with pytest.raises(ConfigError, match=r"unknown tracking precision 'half'.*'fp32', 'bf16', 'auto'"):
        compute_dtype("half", "cpu")


class DtypeRecorder:
    """Records the output dtypes of chosen submodules and the dtypes ``point_flow`` is given."""

    def __init__(self, model: GMRW):
        self.seen: dict[str, set[torch.dtype]] = {}
        convs = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
        linears = [m for name, m in model.transformer.named_modules() if name.endswith("merge")]
        fine_convs = [m for m in model.fine_features.modules() if isinstance(m, torch.nn.Conv2d)]
        for name, module in (("backbone", convs[-1]), ("transformer", linears[0]), ("fine", fine_convs[-1])):
            module.register_forward_hook(lambda _m, _i, out, name=name: self.note(name, out.dtype))
        original = model.point_flow

        def point_flow(src, dst, xy, *args, **kwargs):
            self.note("point_flow", src.dtype)
            self.note("point_flow", dst.dtype)
            maps = kwargs.get("maps") or (args[3] if len(args) > 3 else None)  # (method, window, size, maps)
            for frame_maps in maps or ():
                self.note("maps", frame_maps.half.dtype)
            return original(src, dst, xy, *args, **kwargs)

        model.point_flow = point_flow

    def note(self, name: str, dtype: torch.dtype) -> None:
        self.seen.setdefault(name, set()).add(dtype)


@pytest.mark.parametrize("mode", ["direct", "chained"])
def test_bf16_runs_the_global_match_in_bf16_and_the_rest_in_fp32(mode):
    video = drifting_video()
    options = {"mode": mode, "processing_size": 32, "method": "weighted_argmax", "window": 2.0}
    if mode == "direct":
        options.update(round_trip=8.0, chained_candidate=True, round_trip_correction=True)
    results = {}
    for precision in ("fp32", "bf16"):
        model = tiny()
        recorder = DtypeRecorder(model)
        tracks, occluded = track(model, video, QUERIES, precision=precision, **options)
        assert tracks.dtype == torch.float32 and tracks.shape == (1, 3, 4, 2)
        assert torch.isfinite(tracks).all()
        results[precision] = (recorder.seen, tracks, occluded)
    assert results["fp32"][0]["backbone"] == {torch.float32}
    assert results["fp32"][0]["transformer"] == {torch.float32}
    bf16 = results["bf16"][0]
    assert bf16["backbone"] == {torch.bfloat16} and bf16["transformer"] == {torch.bfloat16}
    # the sub-cell step's maps and every read-out stay float32
    assert bf16["fine"] == {torch.float32}
    assert bf16["point_flow"] == {torch.float32} and bf16["maps"] == {torch.float32}
    # each track still starts exactly at its query, (x, y)
    assert torch.equal(results["bf16"][1][0, 0, 0], torch.tensor([12.0, 10.0]))
    assert torch.equal(results["bf16"][1][0, 2, 1], torch.tensor([20.0, 30.0]))
    # bf16 rounding moves the matches a little, not to other places (a tiny random model: loose)
    gap = (results["bf16"][1] - results["fp32"][1]).norm(dim=-1)
    assert gap.median() < 1.0, gap


def test_bf16_without_the_fine_step_and_at_two_sizes():
    video = drifting_video()
    for model, extra in ((tiny(fine_match=None), {}), (tiny(), {"fine_size": 48})):
        fp32, _ = track(model, video, QUERIES, mode="direct", processing_size=32, **extra)
        bf16, _ = track(model, video, QUERIES, mode="direct", processing_size=32, precision="bf16", **extra)
        assert bf16.shape == fp32.shape and torch.isfinite(bf16).all()
        assert not torch.equal(bf16, fp32)  # it did run in bf16
        assert (bf16 - fp32).norm(dim=-1).median() < 1.0


def test_predictor_and_online_session_take_the_precision():
    model = tiny()
    video = drifting_video()[0]
    predictor = Predictor(model, "cpu", mode="chained", processing_size=32, precision="bf16")
    assert predictor.precision == "bf16" and predictor.compute_dtype is torch.bfloat16
    tracks, _ = predictor(video, queries=QUERIES[0, :2])
    expected, _ = track(
        model, video[None], QUERIES[:, :2], mode="chained", processing_size=32, precision="bf16"
    )
    assert torch.equal(tracks, expected[0])
    session = predictor.online()
    assert session.compute_dtype is torch.bfloat16
    session.add_queries(QUERIES[0, :2])
    for frame in video:
        positions, _ = session.step(frame)
    assert torch.isfinite(positions).all()
    assert Predictor(model, "cpu").precision == "fp32"
    auto = Predictor(model, "cpu", precision="auto")
    assert auto.precision == ("bf16" if fast_bf16_matmul() else "fp32")
    with pytest.raises(ConfigError, match="tracking precision"):
        Predictor(model, "cpu", precision="fp16")
    with pytest.raises(ConfigError, match="tracking precision"):  # told before any checkpoint loads
        Predictor("no/such/checkpoint.pth", "cpu", precision="fp16")
