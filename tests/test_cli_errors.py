"""Every bad input to ``gmrw-train`` / ``gmrw-eval`` answered as a user sees it: the console script
exits 1 with one line on stderr, nothing on stdout, no traceback.

A console script costs seconds to start (torch, Lightning), so this runs one case per kind of
mistake; the checks themselves, every one of them, are tested in-process in
``test_config_errors.py``, ``test_cli_eval.py`` and ``test_train.py``."""

from __future__ import annotations

import re

import pytest
import torch

from gmrw.datatools.tiny import write_tapvid_pickle
from helpers import run_console

# (script, arguments, the line it prints): {tmp} is the test's folder, {pkl} a tiny TAP-Vid pickle,
# {text} a text file, {empty} an empty folder.
CASES = {
    "train_without_data_root": (
        "gmrw-train",
        ["experiment=kinetics", "trainer=cpu"],
        "gmrw-train: data.root is required for KineticsPairs: pass the dataset location, "
        "e.g. data.root=/path/to/dataset",
    ),
    "train_data_root_missing": (
        "gmrw-train",
        ["experiment=kinetics", "trainer=cpu", "data.root={tmp}/nonexistent"],
        "gmrw-train: data.root={tmp}/nonexistent: Kinetics root {tmp}/nonexistent does not exist: "
        "expected ROOT/train/<class name>/<video id>.mp4 (Kinetics-700-2020 as downloaded by the cvdf scripts)",
    ),
    "train_data_root_not_kubric": (
        "gmrw-train",
        ["experiment=kubric", "trainer=cpu", "data.root={empty}"],
        "gmrw-train: data.root={empty}: no movi_e/256x256 TFDS folder under {empty}: expected a TFDS data_dir: …",
    ),
    "train_flow_method_typo": (
        "gmrw-train",
        ["model.net.flow_method=weighted_argmx"],
        "gmrw-train: unknown model.net.flow_method 'weighted_argmx'; choose one of "
        "['weighted_sum', 'argmax', 'weighted_argmax']",
    ),
    "train_unknown_experiment": (
        "gmrw-train",
        ["experiment=kinetic"],
        "gmrw-train: unknown experiment=kinetic; choose one of: kinetics, kinetics_finetune, kubric, "
        "synthetic, synthetic_long",
    ),
    "train_key_typo": (
        "gmrw-train",
        ["trainer.max_step=3"],
        "gmrw-train: trainer.max_step is not a setting (did you mean trainer.max_steps?); "
        "to add a new key, prefix the override with +",
    ),
    "eval_without_data_path": (
        "gmrw-eval",
        ["model.checkpoint=null"],
        "gmrw-eval: data.path is required for data format tapvid_davis: pass the dataset location, "
        "e.g. data.path=/data/tapvid_davis/tapvid_davis.pkl",
    ),
    "eval_data_path_not_a_pickle": (
        "gmrw-eval",
        ["data.path={text}", "model.checkpoint=null"],
        "gmrw-eval: data.path={text}: {text} is not a pickle: it holds text starting … (UnpicklingError: …)",
    ),
    "eval_checkpoint_missing": (
        "gmrw-eval",
        ["data.path={pkl}", "model.checkpoint={tmp}/nope.ckpt"],
        "gmrw-eval: model.checkpoint={tmp}/nope.ckpt: no such file",
    ),
    "eval_checkpoint_not_a_checkpoint": (
        "gmrw-eval",
        ["data.path={pkl}", "model.checkpoint={text}"],
        "gmrw-eval: model.checkpoint={text}: '{text}' is not a readable GMRW checkpoint (paper .pth, "
        "gmrw .ckpt or state dict): torch's weights-only loader failed with UnpicklingError",
    ),
    "eval_unknown_dataset": (
        "gmrw-eval",
        ["data=tapvid_davsi"],
        "gmrw-eval: unknown data=tapvid_davsi; choose one of: …",
    ),
    "eval_key_typo": (
        "gmrw-eval",
        ["data.path={pkl}", "model.checkpoint=null", "tracking.upsample=2"],
        "gmrw-eval: tracking.upsample is not a setting (did you mean tracking.upsample_factor?); "
        "to add a new key, prefix the override with +",
    ),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_inputs")
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("not a pickle, not a checkpoint\n")
    torch.manual_seed(0)
    pkl = write_tapvid_pickle(root / "tapvid_davis.pkl", num_videos=1, num_frames=4, size=(32, 32))
    return {"tmp": str(root), "empty": str(root / "empty"), "text": str(root / "notes.txt"), "pkl": str(pkl)}


@pytest.mark.slow  # a console script in a subprocess each (~4 s on an idle core)
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line(case, files, tmp_path):
    script, args, expected = CASES[case]
    runs = tmp_path / "runs"
    result = run_console(
        script, [a.format(**files) for a in args], cwd=tmp_path, env={"GMRW_RUNS": str(runs)}
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "Traceback" not in output
    assert result.stdout.strip() == "", "the console shows the error once, on stderr"
    # One line, as given (… stands for the rest of a long line).
    pattern = re.escape(expected.format(**files)).replace("…", ".*")
    assert re.fullmatch(pattern, result.stderr.strip()), result.stderr
    for log_file in runs.glob("*/*/*.log"):  # the run's log records it too, and no trainer was built
        text = log_file.read_text()
        assert result.stderr.strip().split(": ", 1)[1] in text
        assert "GPU available" not in text
    assert not list(runs.glob("*/*/checkpoints")), "nothing may be built for a setting that cannot work"
