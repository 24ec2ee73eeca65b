"""The README's "Tracking your own videos" snippets work as written: its Python blocks run in order and
its ``gmrw-track`` lines run, in a folder holding a ``clip.mp4`` and, standing in for the paper's
``kubric_73k.pth``, a tiny GMRW checkpoint of that name (our checkpoint layout, tracking at short
side 32 so that this stays fast)."""

from __future__ import annotations

import re
import shlex

import numpy as np
import pytest
import torch

from gmrw.cli.track import main as gmrw_track
from gmrw.datatools.tiny import textured_video
from gmrw.video import write_video
from helpers import REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_NET = {"feature_channels": 32, "num_transformer_layers": 2, "ffn_dim_expansion": 2}


def section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 3)
    return text[start : end if end > 0 else None]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


@pytest.fixture()
def stand_ins(tmp_path, monkeypatch):
    from gmrw.models import GMRW

    torch.manual_seed(0)
    state = {f"model.{k}": v for k, v in GMRW(**SMALL_NET).state_dict().items()}
    hyper = {"net": dict(SMALL_NET), "tracking": {"processing_size": 32}}
    torch.save({"state_dict": state, "hyper_parameters": hyper}, tmp_path / "kubric_73k.pth")
    write_video(tmp_path / "clip.mp4", textured_video(12, 144, 208, seed=2), fps=10)
    (tmp_path / "points.csv").write_text("t,x,y\n0,10,20\n5,100,90\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_python_snippets_run_as_written(stand_ins):
    code = blocks(section("Tracking your own videos"), "python")
    assert len(code) == 3, "the Predictor, online and dense snippets"
    namespace: dict = {}
    for block in code:
        exec(compile(block, "README.md", "exec"), namespace)
        if "session" in block:
            # both queries, at the last frame
            assert namespace["positions"].shape == (2, 2) and namespace["occluded"].shape == (2,)
    assert namespace["grid"].shape == (36, 52, 12, 2)
    assert torch.equal(namespace["grid"][3, 5, 0], torch.tensor([20.0, 12.0]))


def test_gmrw_track_lines_run_as_written(stand_ins, capsys):
    lines = [
        line for block in blocks(section("Tracking your own videos"), "bash") for line in block.splitlines()
    ]
    commands = [shlex.split(line.split("#")[0]) for line in lines if line.startswith("gmrw-track ")]
    assert len(commands) == 5
    ran = 0
    for argv in commands:
        if "cuda" in argv and not torch.cuda.is_available():
            continue  # the GPU line
        assert gmrw_track(argv[1:]) == 0, capsys.readouterr().err
        ran += 1
    assert ran >= 4
    dense = np.load(stand_ins / "clip.dense.npz")
    assert dense["tracks"].dtype == np.float16 and int(dense["query_frame"]) == 10
    assert (stand_ins / "clip.tracks.mp4").is_file()
