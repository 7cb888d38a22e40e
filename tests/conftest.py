"""Shared fixtures. Tests use real MCP servers and real processes; nothing here mocks our code."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "toolspace"
TEST_SERVERS = REPO / "tests" / "servers"

# Keep model/index caches where the developer's are, but never reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op torch thread for every test module that uses torch.

    A 135M model gains little from a second thread, and when the suite shares 2 cores with other
    processes, two spinning OpenMP threads make generation ~10-20x slower (measured: batch of
    4 x 16 tokens, 85 s with 2 threads vs 4 s with 1 under load). Without the 'train' extra
    there is no torch and nothing to do.
    """
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared catalogues not found at {SHARED_DATA} (expected ../shared beside the repo)")
    return SHARED_DATA


@pytest.fixture()
def http_server():
    """The streamable-HTTP test server (tests/servers/http_server.py) on a free loopback port."""
    # The server binds port 0 itself and prints it: a port chosen here and bound there could be
    # taken in between by another process (a second test worker).
    proc = subprocess.Popen(
        [sys.executable, str(TEST_SERVERS / "http_server.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"tests/servers/http_server.py did not start (printed {line!r})")
    port = int(line.split()[1])
    wait_for_port(port)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
