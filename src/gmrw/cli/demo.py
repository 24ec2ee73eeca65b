"""``gmrw-demo``: a web page to try tracking without writing code (needs ``pip install -e ".[demo]"``).

    gmrw-demo --checkpoint kubric_73k.pth                       # http://127.0.0.1:7860
    gmrw-demo --checkpoint a.ckpt --checkpoint runs/kubric/<run> --port 8000

It listens on 127.0.0.1 unless ``--host`` says otherwise, never makes a public share link, caps
uploads (``--max-upload-mb``, ``--max-frames``, ``--max-side``), and writes only inside its own
temporary folder (uploads, outputs and Gradio's cache), which it removes when it stops.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("gmrw.demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gmrw-demo", description="Try GMRW point tracking in the browser (a Gradio app)."
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        help="the paper's .pth, a gmrw .ckpt or a run directory; repeat to offer several "
        "(default: random weights, for trying the page only)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda, ...")
    parser.add_argument("--max-upload-mb", type=float, default=50, help="largest upload (default 50 MB)")
    parser.add_argument("--max-frames", type=int, default=300, help="longest video in frames (default 300)")
    parser.add_argument("--max-side", type=int, default=1920, help="largest frame side in px (default 1920)")
    parser.add_argument("--no-example", action="store_true", help="do not offer the synthetic example clip")
    return parser


def checkpoint_choices(paths: Sequence[str]) -> dict[str, str | None]:
    """Display name → path for each ``--checkpoint`` (random weights when none is given)."""
    from gmrw.demo.backend import RANDOM_WEIGHTS

    if not paths:
        return {RANDOM_WEIGHTS: None}
    choices: dict[str, str | None] = {}
    for path in paths:
        name = Path(path).name or str(path)
        while name in choices:
            name = f"{name} ({len(choices)})"
        choices[name] = path
    return choices


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests
    args = build_parser().parse_args(argv)
    if args.max_upload_mb <= 0 or args.max_frames < 2 or args.max_side < 8:
        print("gmrw-demo: error: the limits must be positive (and --max-frames at least 2)", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="gmrw-demo-"))
    # Read when the libraries are imported: Gradio's uploads and cache go inside our folder, and it
    # sends no usage statistics; matplotlib's font cache and the folder torch's compiler makes on
    # import (Lightning, behind the example clip, imports it) go there too.
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "gradio")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["MPLCONFIGDIR"] = str(workdir / "matplotlib")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(workdir / "torchinductor")
    try:
        return serve(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def serve(args: argparse.Namespace, workdir: Path) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        print('gmrw-demo: error: Gradio is not installed; pip install -e ".[demo]"', file=sys.stderr)
        return 1
    from gmrw.demo.app import build_app
    from gmrw.demo.backend import DemoBackend, Limits, example_video

    limits = Limits(args.max_upload_mb, args.max_frames, args.max_side)
    backend = DemoBackend(checkpoint_choices(args.checkpoint), workdir, limits, args.device)
    try:
        for name in backend.checkpoints:  # load each now: a bad checkpoint stops here, not in the page
            backend.predictor(name)
    except ValueError as error:
        print(f"gmrw-demo: error: {error}", file=sys.stderr)
        return 1
    example = None if args.no_example else example_video(workdir / "example")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: anyone who can reach this address can use the demo", args.host)
    app = build_app(backend, example)
    app.queue(default_concurrency_limit=1)
    print(f"gmrw-demo: http://{args.host}:{args.port} (Ctrl+C to stop); files go to {workdir}", flush=True)
    try:
        app.launch(
            server_name=args.host,
            server_port=args.port,
            share=False,
            max_file_size=int(args.max_upload_mb * 2**20),
            allowed_paths=[str(workdir)],
            footer_links=[],
            show_error=False,
            inbrowser=False,
            ssr_mode=False,
            quiet=True,
        )
    except OSError as error:  # the port is taken, or the address is not this machine's
        print(f"gmrw-demo: error: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
