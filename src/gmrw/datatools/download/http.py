"""HTTP transfers that survive a long download: resume with Range, bounded retries, clear failures.

:class:`Fetcher` wraps one ``requests`` session. :meth:`Fetcher.download` writes to a ``.part`` file and
renames it into place only when the byte count (and the server's MD5, when it sends one) match, so a
file at its final path is always complete. A transfer that breaks (timeout, dropped connection, 5xx,
429) is retried up to ``retries`` times in a row with exponential backoff, continuing the ``.part`` file
with an HTTP Range request; an attempt that moved bytes forward resets that count. A server that ignores
Range (answers 200 to a Range request) restarts the file from byte 0. 401/403/404/410 and other 4xx
fail at once: retrying cannot fix them.

``urllib3``'s own ``Retry`` is not used: it retries a request, but cannot resume a body that drops
half-way, which is the failure that matters for a 700 GB download.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import requests
import urllib3

T = TypeVar("T")
CHUNK = 1 << 20
USER_AGENT = "gmrw-data-download"
#: Statuses worth retrying: the server may answer differently in a moment.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class DownloadError(Exception):
    """A file could not be fetched; the message names the URL and the reason."""


class PermanentHTTPError(DownloadError):
    """The server refused the file (404, 403, ...): retrying will not help."""


class Interrupted(Exception):
    """The run was asked to stop (Ctrl-C); partial files stay for the next run."""


def mirror_url(url: str, mirror: str | None) -> str:
    """``url`` with its scheme and host replaced by ``mirror`` (which may carry a path prefix):
    a mirror serves the publisher's paths unchanged."""
    if not mirror:
        return url
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return mirror.rstrip("/") + path


@dataclasses.dataclass
class RetryPolicy:
    """``retries`` failed attempts in a row are tolerated per file, waiting ``backoff`` · 2^k seconds
    (at most ``max_backoff``) before attempt k + 1."""

    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    connect_timeout: float = 15.0
    read_timeout: float = 60.0

    def wait(self, failures: int) -> float:
        return min(self.backoff * 2 ** (failures - 1), self.max_backoff)


def _md5_from_headers(headers) -> str | None:
    """The whole object's MD5 (hex) from a Google Cloud Storage ``x-goog-hash`` header, if sent."""
    for part in headers.get("x-goog-hash", "").split(","):
        key, _, value = part.strip().partition("=")
        if key == "md5" and value:
            return base64.b64decode(value).hex()
    return None


def _parse_content_range(value: str) -> tuple[int | None, int | None]:
    """``bytes START-END/TOTAL`` or ``bytes */TOTAL`` → (START, TOTAL); None for what is absent."""
    m = re.fullmatch(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)", value.strip())
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    return start, (int(m.group(2)) if m.group(2) != "*" else None)


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


class Fetcher:
    """One HTTP session for a run; URLs are the publisher's, fetched from ``mirror`` when given (and
    named as fetched in messages). ``on_bytes(n)`` is called for every chunk written, ``on_note(msg)``
    for retries and restarts (plain text, one line), ``stop`` ends transfers early (raises
    :class:`Interrupted`)."""

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        mirror: str | None = None,
        on_bytes: Callable[[int], None] | None = None,
        on_note: Callable[[str], None] | None = None,
        stop: threading.Event | None = None,
    ):
        self.policy = policy or RetryPolicy()
        self.mirror = mirror
        self.on_bytes = on_bytes or (lambda n: None)
        self.on_note = on_note or (lambda msg: None)
        self.stop = stop or threading.Event()
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        # Connections to one host are reused by every worker thread.
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    # ------------------------------------------------------------------ helpers

    def _timeouts(self) -> tuple[float, float]:
        return self.policy.connect_timeout, self.policy.read_timeout

    def _raise_for_status(self, url: str, response: requests.Response) -> None:
        code = response.status_code
        if code < 400:
            return
        reason = f"HTTP {code} {response.reason or ''}".strip()
        if code in TRANSIENT_STATUSES:
            raise _Transient(reason)
        raise PermanentHTTPError(f"{url}: {reason}")

    def _with_retries(self, url: str, attempt: Callable[[], T]) -> T:
        """``attempt()``, repeated while it raises :class:`_Transient`; ``retries`` failures in a row
        give up (a failure after bytes moved forward counts as the first of a new row)."""
        failures = 0
        while True:
            if self.stop.is_set():
                raise Interrupted(url)
            try:
                return attempt()
            except _Transient as exc:
                failures = 1 if exc.progressed else failures + 1
                if failures > self.policy.retries:
                    raise DownloadError(
                        f"{url}: {exc} (gave up after {self.policy.retries} retries)"
                    ) from None
                wait = self.policy.wait(failures)
                self.on_note(f"retry {failures}/{self.policy.retries} in {wait:.1f}s: {url}: {exc}")
                if self.stop.wait(wait):
                    raise Interrupted(url) from None

    # ------------------------------------------------------------------ small requests

    def head_size(self, url: str) -> int | None:
        """The size a GET of ``url`` would return (Content-Length of a HEAD), or None when unknown."""
        url = mirror_url(url, self.mirror)

        def attempt():
            try:
                r = self.session.head(url, allow_redirects=True, timeout=self._timeouts())
            except requests.RequestException as exc:
                raise _Transient(f"{type(exc).__name__}: {exc}") from None
            if r.status_code in (405, 501):  # HEAD not offered: the size stays unknown
                return None
            self._raise_for_status(url, r)
            value = r.headers.get("Content-Length")
            return int(value) if value and value.isdigit() else None

        return self._with_retries(url, attempt)

    def get_bytes(self, url: str) -> bytes:
        """The whole body of a small file (list files, metadata), with retries."""
        url = mirror_url(url, self.mirror)

        def attempt():
            try:
                r = self.session.get(url, timeout=self._timeouts())
                self._raise_for_status(url, r)
                return r.content
            except requests.RequestException as exc:
                raise _Transient(f"{type(exc).__name__}: {exc}") from None

        return self._with_retries(url, attempt)

    # ------------------------------------------------------------------ files

    def download(self, url: str, dest: Path, part: Path | None = None, size: int | None = None) -> int:
        """Fetch ``url`` into ``dest`` via ``part`` (default ``dest.part``), resuming what ``part``
        holds. ``size``, when known, must match. Returns the bytes transferred by this call."""
        url = mirror_url(url, self.mirror)
        dest, part = Path(dest), Path(part) if part is not None else Path(f"{dest}.part")
        part.parent.mkdir(parents=True, exist_ok=True)
        state = _TransferState()
        restarted_after_checksum = False
        while True:
            total = self._with_retries(url, functools.partial(self._attempt, url, part, size, state))
            got = part.stat().st_size
            if total is not None and got != total:
                raise DownloadError(f"{url}: got {got} bytes, the server announced {total}")
            if size is not None and got != size:
                raise DownloadError(f"{url}: got {got} bytes, expected {size}")
            if state.md5 is not None and file_md5(part) != state.md5:
                if restarted_after_checksum:
                    part.unlink()
                    raise DownloadError(f"{url}: MD5 differs from the server's x-goog-hash twice; not kept")
                self._restart(part, got, url, "MD5 differs from the server's x-goog-hash")
                restarted_after_checksum = True
                state = _TransferState()
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, dest)
            return state.transferred

    def _attempt(self, url: str, part: Path, size: int | None, state: _TransferState) -> int | None:
        """One GET; returns the total size the server announced (None if it did not)."""
        offset = part.stat().st_size if part.exists() else 0
        if size is not None and offset > size:
            self._restart(part, offset, url, f"partial file larger than the file ({offset} > {size} bytes)")
            offset = 0
        # Byte offsets must count the file's own bytes, not a compressed transfer of them.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        moved = 0
        try:
            with self.session.get(url, headers=headers, stream=True, timeout=self._timeouts()) as r:
                if r.status_code == 416 and offset:
                    # Nothing after `offset`: the part is complete if the sizes agree, else start over.
                    _, announced = _parse_content_range(r.headers.get("Content-Range", ""))
                    if offset in (announced, size):
                        return offset
                    self._restart(part, offset, url, "range not satisfiable")
                    raise _Transient("range not satisfiable; restarting from byte 0")
                self._raise_for_status(url, r)
                state.md5 = _md5_from_headers(r.headers) or state.md5
                if r.status_code == 206:
                    start, total = _parse_content_range(r.headers.get("Content-Range", ""))
                    if start != offset:
                        self._restart(
                            part, offset, url, f"unexpected Content-Range {r.headers.get('Content-Range')!r}"
                        )
                        raise _Transient("unexpected Content-Range; restarting from byte 0")
                    mode = "ab"
                else:
                    if offset:
                        self._restart(part, offset, url, "server ignored the Range request")
                    length = r.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    mode = "wb"
                with open(part, mode) as f:
                    # read1 hands over what has arrived, so a connection that drops keeps its bytes.
                    while chunk := r.raw.read1(CHUNK):
                        if self.stop.is_set():
                            raise Interrupted(url)
                        f.write(chunk)
                        moved += len(chunk)
                        state.transferred += len(chunk)
                        self.on_bytes(len(chunk))
        except requests.RequestException as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}", progressed=moved > 0) from None
        except urllib3.exceptions.HTTPError as exc:  # raised by raw reads (dropped, timed out)
            raise _Transient(f"{type(exc).__name__}: {exc}", progressed=moved > 0) from None
        got = part.stat().st_size
        if total is not None and got < total:
            raise _Transient(f"connection closed at byte {got} of {total}", progressed=moved > 0)
        return total

    def _restart(self, part: Path, offset: int, url: str, why: str) -> None:
        """Drop a partial file whose continuation the server cannot give; un-count its bytes."""
        self.on_note(f"{why}, restarting from byte 0: {url}")
        part.unlink(missing_ok=True)
        self.on_bytes(-offset)


class _Transient(Exception):
    def __init__(self, message: str, progressed: bool = False):
        super().__init__(message)
        self.progressed = progressed


@dataclasses.dataclass
class _TransferState:
    transferred: int = 0
    md5: str | None = None
