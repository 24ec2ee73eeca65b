"""Start the demo: check the checkpoints, then serve the page with Gradio until stopped."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("gmrw.demo")


def launch(
    checkpoints: dict[str, str | None],
    workdir: Path,
    limits: tuple[float, int, int],
    device: str = "auto",
    host: str = "127.0.0.1",
    port: int = 7860,
    example: bool = True,
    ready: Callable[[], None] | None = None,
    precision: str = "fp32",
) -> None:
    """Serve the demo page on ``host:port`` (blocks). ``checkpoints``: display name → path (None:
    random weights); ``limits``: (largest upload in MB, longest video in frames, largest side in
    px). Everything is written inside ``workdir``. ``ready`` is called once the page is about to
    be served. ``precision``: as :class:`gmrw.Predictor`'s.

    Raises:
        ValueError: Gradio is not installed, a checkpoint does not load, or the address cannot be
            listened on; the message says which.
    """
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ValueError('Gradio is not installed; pip install -e ".[demo]"') from None
    from gmrw.demo.app import build_app
    from gmrw.demo.backend import DemoBackend, Limits, example_video

    max_upload_mb = limits[0]
    backend = DemoBackend(checkpoints, workdir, Limits(*limits), device, precision)
    for name in backend.checkpoints:  # load each now: a bad checkpoint stops here, not in the page
        backend.predictor(name)
    clip = example_video(workdir / "example") if example else None
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: anyone who can reach this address can use the demo", host)
    app = build_app(backend, clip)
    app.queue(default_concurrency_limit=1)
    if ready is not None:
        ready()
    try:
        app.launch(
            server_name=host,
            server_port=port,
            share=False,
            max_file_size=int(max_upload_mb * 2**20),
            allowed_paths=[str(workdir)],
            footer_links=[],
            show_error=False,
            inbrowser=False,
            ssr_mode=False,
            quiet=True,
        )
    except OSError as error:  # the port is taken, or the address is not this machine's
        raise ValueError(f"cannot listen on {host}:{port}: {error}") from None
