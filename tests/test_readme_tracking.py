"""The tracking snippets of the README's quick start and of docs/tracking.md work as written: their
Python blocks run in order and their ``gmrw-track`` lines run, in a folder holding a ``clip.mp4``
and, standing in for the paper's ``kubric_73k.pth``, a tiny GMRW checkpoint of that name (our
checkpoint layout, tracking at short side 32 so that this stays fast)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from doc_pages import DOCS, README, blocks, commands, section
from gmrw.cli.track import main as gmrw_track
from gmrw.datatools.tiny import textured_video
from gmrw.video import write_video

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_NET = {"feature_channels": 32, "num_transformer_layers": 2, "ffn_dim_expansion": 2}
FRAMES, HEIGHT, WIDTH = 12, 144, 208
TRACKING_PAGE = DOCS / "tracking.md"


@pytest.fixture()
def stand_ins(tmp_path, monkeypatch):
    from gmrw.models import GMRW

    torch.manual_seed(0)
    state = {f"model.{k}": v for k, v in GMRW(**SMALL_NET).state_dict().items()}
    hyper = {"net": dict(SMALL_NET), "tracking": {"processing_size": 32}}
    torch.save({"state_dict": state, "hyper_parameters": hyper}, tmp_path / "kubric_73k.pth")
    write_video(tmp_path / "clip.mp4", textured_video(FRAMES, HEIGHT, WIDTH, seed=2), fps=10)
    # Inside the frame whichever order a row is read in (t,y,x or the CLI's former t,x,y).
    (tmp_path / "points.csv").write_text("t,y,x\n0,20,10\n5,90,100\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_blocks(code: list[str], where: str) -> dict:
    namespace: dict = {}
    for block in code:
        exec(compile(block, where, "exec"), namespace)
    return namespace


def run_gmrw_track_lines(argvs: list[list[str]], capsys) -> int:
    ran = 0
    for argv in argvs:
        if "cuda" in argv and not torch.cuda.is_available():
            continue  # the GPU line
        assert gmrw_track(argv) == 0, capsys.readouterr().err
        ran += 1
    return ran


def test_quick_start_python_runs_as_written(stand_ins):
    code = blocks(section(README, "Quick start"), "python")
    assert len(code) == 1, "one quick-start block: offline, visualise, online"
    namespace = run_blocks(code, "README.md")
    assert namespace["tracks"].shape == (2, FRAMES, 2) and namespace["occluded"].shape == (2, FRAMES)
    assert namespace["positions"].shape == (1, 2) and namespace["hidden"].shape == (1,)
    from gmrw.video import read_frames

    frames, _ = read_frames(str(stand_ins / "tracks.mp4"), list(range(FRAMES)))
    assert frames.shape == (FRAMES, HEIGHT, WIDTH, 3)


def test_quick_start_gmrw_track_lines_run_as_written(stand_ins, capsys):
    argvs = commands(section(README, "Quick start"), "gmrw-track")
    assert len(argvs) == 2
    assert run_gmrw_track_lines(argvs, capsys) == 2
    assert (stand_ins / "clip.tracks.npz").is_file() and (stand_ins / "clip.tracks.mp4").is_file()


def test_tracking_page_python_runs_as_written(stand_ins):
    code = blocks(TRACKING_PAGE.read_text(), "python")
    assert len(code) == 5, "the Predictor, online, dense, precision and model snippets"
    namespace: dict = {}
    for block in code:
        exec(compile(block, "docs/tracking.md", "exec"), namespace)
        if "session" in block:
            # both queries, at the last frame
            assert namespace["positions"].shape == (2, 2) and namespace["occluded"].shape == (2,)
        if "dense=4" in block:
            assert namespace["grid"].shape == (36, 52, FRAMES, 2)
            assert torch.equal(namespace["grid"][3, 5, 0], torch.tensor([20.0, 12.0]))
        if "precision=" in block:
            assert namespace["fast"].precision in ("fp32", "bf16") and namespace["tracks"].shape == (
                100,
                FRAMES,
                2,
            )
    # the model underneath: 64×64 frames, 16×16 cells
    assert namespace["P"].shape == (1, 256, 256)
    assert torch.allclose(namespace["P"].sum(-1), torch.ones(1, 256), atol=1e-5)
    assert namespace["F"].shape == (1, 2, 64, 64)
    assert {"loss", "cycle_loss", "accuracy", "smoothness_loss"} <= set(namespace["out"])
    assert namespace["tracks"].shape == (1, 1, 8, 2) and namespace["occluded"].shape == (1, 1, 8)


def test_tracking_page_gmrw_track_lines_run_as_written(stand_ins, capsys):
    argvs = commands(TRACKING_PAGE.read_text(), "gmrw-track")
    assert len(argvs) == 6
    assert run_gmrw_track_lines(argvs, capsys) >= 5
    dense = np.load(stand_ins / "clip.dense.npz")
    assert dense["tracks"].dtype == np.float16 and int(dense["query_frame"]) == 10
    assert (stand_ins / "clip.tracks.mp4").is_file()
