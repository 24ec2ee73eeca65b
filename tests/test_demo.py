"""gmrw-demo: upload checks and tracking without a browser, then the real page in headless Chromium
(Debian's chromium + chromium-driver, through Selenium): upload a clip, click two points, track,
and find the tracks video on the page and the npz equal to the Predictor's."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from gmrw.datatools.tiny import textured_video
from gmrw.demo.backend import DemoBackend, DemoError, Limits
from gmrw.tracking import Predictor
from gmrw.video import write_video
from helpers import BIN

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_NET = {"feature_channels": 32, "num_transformer_layers": 2, "ffn_dim_expansion": 2}
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def small_checkpoint(path: Path) -> Path:
    """A tiny model in our trainer's checkpoint layout, tracking at short side 48 (as it records)."""
    from gmrw.models import GMRW

    torch.manual_seed(0)
    state = {f"model.{k}": v for k, v in GMRW(**SMALL_NET).state_dict().items()}
    hyper = {"net": dict(SMALL_NET), "tracking": {"mode": "chained", "processing_size": 48}}
    torch.save({"state_dict": state, "hyper_parameters": hyper}, path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    garbage = root / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    return {
        "clip": write_video(root / "clip.mp4", textured_video(6, 48, 64, seed=5), fps=6),
        "long": write_video(root / "long.mp4", textured_video(12, 32, 32, seed=1), fps=6),
        "one": write_video(root / "one.mp4", textured_video(1, 32, 32, seed=1)),
        "garbage": garbage,
        "checkpoint": small_checkpoint(root / "small.ckpt"),
    }


@pytest.fixture()
def backend(files, tmp_path):
    limits = Limits(max_megabytes=0.01, max_frames=10, max_side=60)
    return DemoBackend({"small": str(files["checkpoint"])}, tmp_path / "work", limits, device="cpu")


@pytest.mark.parametrize(
    "name, message",
    [
        ("garbage", "garbage.mp4 is not a video this demo can read"),
        ("long", "long.mp4 has 12 frames; this demo takes at most 10"),
        ("one", "one.mp4 has 1 frame; tracking needs at least 2"),
        ("clip", "clip.mp4 is 64x48; this demo takes frames up to 60 px"),
        (None, "no video"),
    ],
)
def test_bad_uploads_get_a_message(backend, files, name, message):
    with pytest.raises(DemoError, match=message):
        backend.open_video(files[name] if name else None)


def test_upload_size_cap(files, tmp_path):
    tiny = DemoBackend({"small": None}, tmp_path, Limits(max_megabytes=0.001))
    with pytest.raises(DemoError, match=r"clip.mp4 is 0.00\d+ MB; this demo takes videos up to 0.001 MB"):
        tiny.open_video(files["clip"])


def test_the_backend_tracks_in_the_precision_it_is_given(files, tmp_path):
    """``gmrw-demo --precision``: the backend's predictors run as told (fp32 unless told)."""
    bf16 = DemoBackend({"small": str(files["checkpoint"])}, tmp_path / "a", device="cpu", precision="bf16")
    assert bf16.predictor("small").precision == "bf16"
    assert bf16.predictor("small").compute_dtype is torch.bfloat16
    assert DemoBackend({"small": None}, tmp_path / "b", device="cpu").predictor("small").precision == "fp32"


def test_clicks_become_queries_and_tracks_match_the_predictor(files, tmp_path):
    backend = DemoBackend({"small": str(files["checkpoint"])}, tmp_path / "work", device="cpu")
    info = backend.open_video(files["clip"])
    assert info.display_scale == 8  # 64 px wide → 512 px on the page
    points = backend.add_point(
        info, 2, (8 * 20 + 4, 8 * 30 + 4), []
    )  # in the 8×8 block showing pixel (20, 30)
    assert points == [[2, pytest.approx(30.0625), pytest.approx(20.0625)]]
    shown = backend.frame_image(info, 2, points)
    assert shown.shape == (384, 512, 3)
    with pytest.raises(DemoError, match="no query points"):
        backend.run(info, [], 0, 0, "small")
    result = backend.run(info, points, 2, 1, "small")
    assert result.video.is_file() and result.video.parent.parent == tmp_path / "work" / "runs"
    data = np.load(result.npz)
    assert data["queries"].shape == (1 + 4, 3) and "Tracked 5 points over 6 frames" in result.message
    tracks, occluded = Predictor(files["checkpoint"], "cpu")(files["clip"], queries=data["queries"])
    np.testing.assert_allclose(data["tracks"], tracks.numpy(), atol=1e-4)
    assert np.array_equal(data["occluded"], occluded.numpy())


def test_page_handlers_show_messages_not_tracebacks(files, tmp_path):
    gr = pytest.importorskip("gradio", reason="Gradio is not installed (pip install -e '.[demo]')")
    from gmrw.demo.app import _shown_errors

    backend = DemoBackend({"small": None}, tmp_path, device="cpu")
    with pytest.raises(gr.Error, match="is not a video this demo can read"):
        _shown_errors(backend.open_video)(str(files["garbage"]))

    def broken():
        raise RuntimeError("internal detail")

    with pytest.raises(gr.Error) as caught:
        _shown_errors(broken)()
    assert "RuntimeError" in str(caught.value) and "internal detail" not in str(caught.value)


# ------------------------------------------------------------------------------- in a browser


def _browser_or_skip():
    """Selenium's Chrome driver on Debian's chromium, or a skip that says what is missing."""
    pytest.importorskip("gradio", reason="Gradio is not installed (pip install -e '.[demo]')")
    pytest.importorskip("selenium", reason="Selenium is not installed (pip install -e '.[dev]')")
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip("Chromium is not installed (apt-get install -y chromium chromium-driver)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp* writes them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def _wait_for_page(url: str, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(
                f"gmrw-demo exited with {server.returncode}:\n{server.stdout.read()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"gmrw-demo did not answer at {url} within {seconds:.0f} s")


@pytest.mark.slow
def test_demo_in_a_real_browser(files, tmp_path):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    sandbox = {name: tmp_path / name for name in ("tmp", "home", "cwd")}
    for folder in sandbox.values():
        folder.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(sandbox["tmp"]),
        "HOME": str(sandbox["home"]),
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",  # as this test's own Predictor runs (one_torch_thread)
    }
    env.pop("MPLCONFIGDIR", None)
    server = subprocess.Popen(
        [
            str(BIN / "gmrw-demo"),
            "--checkpoint",
            str(files["checkpoint"]),
            "--port",
            str(port),
            "--device",
            "cpu",
        ],
        cwd=sandbox["cwd"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    driver = None
    try:
        _wait_for_page(url, server)
        assert _listening_addresses(port) <= {"0100007F"}, "the demo must listen on 127.0.0.1 only"
        workdirs = list(sandbox["tmp"].glob("gmrw-demo-*"))
        assert len(workdirs) == 1

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
        ):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(60)
        wait = WebDriverWait(driver, 60)
        driver.get(url)

        def upload(path: Path) -> None:
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))
            driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(path))

        # A file that is not a video: a message on the page, no traceback.
        upload(files["garbage"])
        wait.until(lambda d: "is not a video this demo can read" in d.find_element(By.TAG_NAME, "body").text)
        assert "Traceback" not in driver.find_element(By.TAG_NAME, "body").text
        driver.refresh()

        upload(files["clip"])
        frame_shown = "const i = document.querySelector('#frame-image img'); return !!i && i.complete && i.naturalWidth > 0;"
        wait.until(lambda d: d.execute_script(frame_shown))
        wait.until(lambda d: "6 frames, 64x48" in d.find_element(By.ID, "video-info").text)

        def click(x: float, y: float, count: int) -> None:
            """Click the page's frame where the video's pixel (x, y) is shown; ``count`` points then."""
            wait.until(lambda d: d.execute_script(frame_shown))  # redrawn after each click
            image = driver.find_element(By.CSS_SELECTOR, "#frame-image img")
            # Whole in view: offsets count from the centre of the element's visible part.
            left, top, width, height, natural_w, natural_h = driver.execute_script(
                "arguments[0].scrollIntoView({block: 'center'});"
                "const b = arguments[0].getBoundingClientRect();"
                "return [b.left, b.top, b.width, b.height, arguments[0].naturalWidth, arguments[0].naturalHeight];",
                image,
            )
            k = natural_w / 64  # the page shows the frame enlarged k times
            scale = min(width / natural_w, height / natural_h, 1)
            px = (x + 0.5) * k * scale + (width - natural_w * scale) / 2
            py = (y + 0.5) * k * scale + (height - natural_h * scale) / 2
            ActionChains(driver).move_to_element_with_offset(
                image, px - width / 2, py - height / 2
            ).click().perform()
            wait.until(lambda d: f"{count} point(s)" in d.find_element(By.ID, "points").text)

        clicked = [(20.0, 30.0), (41.0, 12.0)]
        for count, (x, y) in enumerate(clicked, start=1):
            click(x, y, count)
        driver.find_element(By.ID, "run").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tracks-video video[src]"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tracks-npz a[href]"))
        source = driver.find_element(By.CSS_SELECTOR, "#tracks-video video").get_attribute("src")
        assert source.startswith(url) and source.endswith("clip.tracks.mp4")
        assert "Tracked 2 points over 6 frames" in driver.find_element(By.ID, "status").text
        driver.save_screenshot(str(tmp_path / "demo.png"))
        if os.environ.get("GMRW_DEMO_SCREENSHOT"):
            driver.save_screenshot(os.environ["GMRW_DEMO_SCREENSHOT"])

        href = driver.find_element(By.CSS_SELECTOR, "#tracks-npz a[href]").get_attribute("href")
        downloaded = tmp_path / "downloaded.npz"
        with urllib.request.urlopen(href, timeout=30) as response:
            downloaded.write_bytes(response.read())
        data = np.load(downloaded)
        np.testing.assert_allclose(data["queries"][:, [2, 1]], clicked, atol=0.5)
        assert (data["queries"][:, 0] == 0).all()
        tracks, occluded = Predictor(files["checkpoint"], "cpu")(files["clip"], queries=data["queries"])
        np.testing.assert_allclose(data["tracks"], tracks.numpy(), atol=1e-4)
        assert np.array_equal(data["occluded"], occluded.numpy())
        with urllib.request.urlopen(source, timeout=30) as response:
            assert response.read(12)[4:8] == b"ftyp"  # an mp4 is served
    finally:
        if driver is not None:
            driver.quit()
        os.killpg(server.pid, signal.SIGINT)
        try:
            output = server.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            output = server.communicate()[0]
    # Everything it wrote was inside its own temporary folder, removed when it stopped.
    assert list(sandbox["cwd"].iterdir()) == [] and list(sandbox["home"].iterdir()) == []
    assert list(sandbox["tmp"].iterdir()) == [], output[-2000:]
