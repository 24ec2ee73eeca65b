"""``gmrw-demo``: a web page to try tracking without writing code (needs ``pip install -e ".[demo]"``).

    gmrw-demo --checkpoint kubric_73k.pth                       # http://127.0.0.1:7860
    gmrw-demo --checkpoint a.ckpt --checkpoint runs/kubric/<run> --port 8000

It listens on 127.0.0.1:7860 unless ``--host`` / ``--port`` or, without them, Gradio's own
``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` (which hosting platforms set) say otherwise, never
makes a public share link, caps uploads (``--max-upload-mb``, ``--max-frames``, ``--max-side``),
and writes only inside its own temporary folder (uploads, outputs and Gradio's cache), which it
removes when it stops.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from gmrw.choices import TRACKING_PRECISIONS

log = logging.getLogger("gmrw.demo")


#: Where the page is served unless a flag or Gradio's variables say otherwise: this machine only.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
#: Gradio's own variables for the address (hosting platforms set them).
HOST_VARIABLE = "GRADIO_SERVER_NAME"
PORT_VARIABLE = "GRADIO_SERVER_PORT"


def listen_address(
    host: str | None, port: int | None, environ: Mapping[str, str] = os.environ
) -> tuple[str, int]:
    """(host, port) to serve on: the flags, else Gradio's ``GRADIO_SERVER_NAME`` /
    ``GRADIO_SERVER_PORT``, else 127.0.0.1:7860. ValueError for a port that is not one."""
    if host is None:
        host = environ.get(HOST_VARIABLE, "").strip() or DEFAULT_HOST
    if port is None:
        text = environ.get(PORT_VARIABLE, "").strip()
        if text and not (text.isdigit() and 0 < int(text) < 65536):
            raise ValueError(f"{PORT_VARIABLE}={text!r} is not a port number (1-65535)")
        port = int(text) if text else DEFAULT_PORT
    elif not 0 < port < 65536:
        raise ValueError(f"--port {port} is not a port number (1-65535)")
    return host, port


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
    parser.add_argument(
        "--host",
        help=f"address to listen on (default: $GRADIO_SERVER_NAME, else {DEFAULT_HOST})",
    )
    parser.add_argument("--port", type=int, help=f"port (default: $GRADIO_SERVER_PORT, else {DEFAULT_PORT})")
    parser.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda, ...")
    parser.add_argument(
        "--precision",
        choices=TRACKING_PRECISIONS,
        default="fp32",
        help="the encoder's and transformer's arithmetic (auto: bf16 where it is fast, e.g. CPUs with AMX)",
    )
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
    try:
        args.host, args.port = listen_address(args.host, args.port)
    except ValueError as error:
        print(f"gmrw-demo: error: {error}", file=sys.stderr)
        return 1
    # Ctrl+C must stop the server (and so remove its folder) even when the parent process started
    # us with SIGINT ignored, which Python would otherwise keep (nohup, some job runners, test suites).
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
        remove_folder(workdir)


def remove_folder(folder: Path, attempts: int = 20, pause_s: float = 0.25) -> None:
    """Delete ``folder`` even while the server's worker threads are still finishing a write into
    it (a request cut short by Ctrl+C): a file created during one pass is removed by the next."""
    for _ in range(attempts):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        time.sleep(pause_s)
    print(f"gmrw-demo: could not remove its temporary folder {folder}", file=sys.stderr)


def serve(args: argparse.Namespace, workdir: Path) -> int:
    from gmrw.demo.server import launch

    try:
        launch(
            checkpoint_choices(args.checkpoint),
            workdir,
            limits=(args.max_upload_mb, args.max_frames, args.max_side),
            device=args.device,
            precision=args.precision,
            host=args.host,
            port=args.port,
            example=not args.no_example,
            ready=lambda: print(
                f"gmrw-demo: http://{args.host}:{args.port} (Ctrl+C to stop); files go to {workdir}",
                flush=True,
            ),
        )
    except ValueError as error:  # Gradio missing, a bad checkpoint, a port that is taken
        print(f"gmrw-demo: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
