"""Where ``gmrw-demo`` listens: ``--host`` / ``--port``, else Gradio's ``GRADIO_SERVER_NAME`` /
``GRADIO_SERVER_PORT`` (hosting platforms set them), else 127.0.0.1:7860."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from gmrw.cli.demo import listen_address, main
from helpers import BIN


def test_flags_then_gradio_variables_then_our_defaults():
    assert listen_address(None, None, {}) == ("127.0.0.1", 7860)
    gradio = {"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "8080"}
    assert listen_address(None, None, gradio) == ("0.0.0.0", 8080)
    assert listen_address("127.0.0.1", 9000, gradio) == ("127.0.0.1", 9000)
    assert listen_address(None, 9000, gradio) == ("0.0.0.0", 9000)
    assert listen_address("localhost", None, gradio) == ("localhost", 8080)
    # Set but empty (a template that left them blank) is not set.
    assert listen_address(None, None, {"GRADIO_SERVER_NAME": "", "GRADIO_SERVER_PORT": " "}) == (
        "127.0.0.1",
        7860,
    )


@pytest.mark.parametrize("value", ["http", "0", "70000", "-1", "80.5"])
def test_a_variable_that_is_not_a_port_is_named(value):
    with pytest.raises(ValueError, match=rf"^GRADIO_SERVER_PORT='{value}' is not a port number \(1-65535\)$"):
        listen_address(None, None, {"GRADIO_SERVER_PORT": value})


def test_bad_port_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("GRADIO_SERVER_PORT", "http")
    assert main([]) == 1
    assert (
        capsys.readouterr().err
        == "gmrw-demo: error: GRADIO_SERVER_PORT='http' is not a port number (1-65535)\n"
    )
    monkeypatch.delenv("GRADIO_SERVER_PORT")
    assert main(["--port", "0"]) == 1
    assert capsys.readouterr().err == "gmrw-demo: error: --port 0 is not a port number (1-65535)\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp* writes them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(table):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                address, hex_port = fields[1].split(":")
                if fields[3] == "0A" and int(hex_port, 16) == port:
                    found.add(address)
    return found


@pytest.mark.slow  # starts the Gradio server (~10-20 s on 2 busy cores)
def test_server_takes_its_port_from_gradio_server_port(tmp_path):
    pytest.importorskip("gradio", reason="Gradio is not installed (pip install -e '.[demo]')")
    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("GRADIO_SERVER_NAME", None)
    server = subprocess.Popen(
        [str(BIN / "gmrw-demo"), "--no-example", "--device", "cpu"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline, answered = time.monotonic() + 180, False
        while time.monotonic() < deadline and not answered and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    answered = response.status == 200
            except OSError:
                time.sleep(0.5)
        assert answered, f"gmrw-demo did not answer on GRADIO_SERVER_PORT={port}"
        assert _listening_addresses(port) == {"0100007F"}, "with no host given it listens on 127.0.0.1 only"
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            output = server.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            output = server.communicate()[0]
    assert f"http://127.0.0.1:{port}" in output
