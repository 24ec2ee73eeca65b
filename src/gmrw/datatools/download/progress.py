"""Progress of a download: a live bar on a terminal, plain timestamped lines in a log.

Both show bytes, rate, ETA and files done/failed; both are fed from many worker threads.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from gmrw.datatools.download.disk import human_bytes


def human_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


class Reporter:
    """Plain lines: one per finished or failed file, one per note, and a status line at most every
    ``interval`` seconds while bytes flow."""

    def __init__(self, stream: TextIO | None = None, interval: float = 30.0):
        self.stream = stream or sys.stdout
        self.interval = interval
        self.lock = threading.Lock()
        self.total_bytes: int | None = None
        self.bytes = 0
        self.start_bytes = 0
        self.total_files = 0
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self.last_status = self.started

    # -- the interface the runner uses
    def start(self, total_files: int, total_bytes: int | None, done_bytes: int = 0) -> None:
        with self.lock:
            self.total_files, self.total_bytes = total_files, total_bytes
            self.bytes = self.start_bytes = done_bytes
            self.started = self.last_status = time.monotonic()

    def add_bytes(self, n: int) -> None:
        with self.lock:
            self.bytes += n
            now = time.monotonic()
            if now - self.last_status >= self.interval:
                self.last_status = now
                self._line(f"progress: {self.status()}")

    def file_finished(self, name: str, ok: bool, detail: str = "") -> None:
        with self.lock:
            if ok:
                self.done += 1
            else:
                self.failed += 1
            tag = f"done {self.done + self.failed}/{self.total_files}" if ok else "FAILED"
            self._line(f"[{tag}] {name}" + (f": {detail}" if detail else ""))

    def note(self, message: str) -> None:
        with self.lock:
            self._line(message)

    def close(self) -> None:
        pass

    # -- shared
    def rate(self) -> float:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return (self.bytes - self.start_bytes) / elapsed

    def status(self) -> str:
        rate = self.rate()
        total = self.total_bytes
        eta = (total - self.bytes) / rate if total is not None and rate > 0 else None
        share = f" ({100 * self.bytes / total:.0f}%)" if total else ""
        return (
            f"{human_bytes(self.bytes)} of {human_bytes(total)}{share}, {human_bytes(rate)}/s, "
            f"ETA {human_duration(eta)}, files {self.done} done / {self.failed} failed of {self.total_files}"
        )

    def _line(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=self.stream, flush=True)


class TerminalReporter(Reporter):
    """A tqdm bar (bytes, rate, ETA) with files done/failed beside it; lines print above the bar."""

    def start(self, total_files: int, total_bytes: int | None, done_bytes: int = 0) -> None:
        from tqdm import tqdm

        super().start(total_files, total_bytes, done_bytes)
        self.bar = tqdm(
            total=total_bytes,
            initial=done_bytes,
            unit="B",
            unit_scale=True,
            unit_divisor=1000,
            dynamic_ncols=True,
            file=self.stream,
            desc="download",
        )
        self._postfix()

    def add_bytes(self, n: int) -> None:
        with self.lock:
            self.bytes += n
            self.bar.update(n)

    def file_finished(self, name: str, ok: bool, detail: str = "") -> None:
        super().file_finished(name, ok, detail)
        with self.lock:
            self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"files {self.done}/{self.total_files} done, {self.failed} failed")

    def _line(self, text: str) -> None:
        bar = getattr(self, "bar", None)
        if bar is None:
            super()._line(text)
        else:
            bar.write(text, file=self.stream)

    def close(self) -> None:
        bar = getattr(self, "bar", None)
        if bar is not None:
            bar.close()


def make_reporter(stream: TextIO | None = None) -> Reporter:
    """A live bar when ``stream`` is a terminal, plain lines otherwise (logs, pipes, CI)."""
    stream = stream or sys.stdout
    isatty = getattr(stream, "isatty", None)
    return TerminalReporter(stream) if isatty is not None and isatty() else Reporter(stream)
