"""A throwaway redis-server for tests: on a free port when redis-server is on PATH, else the machine's own."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(port: int, *extra: str) -> subprocess.Popen[bytes]:
    """Start redis-server on ``port`` and wait until it answers (10 s at most)."""
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return server
        except redis.ConnectionError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not start") from None
            time.sleep(0.02)
        finally:
            client.close()


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """A private server's URL, or 127.0.0.1:6379's; skips the test when neither exists."""
    if shutil.which("redis-server"):
        server = start_redis(port := free_port(), "--appendonly", "no")
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.terminate()
            server.wait(10)
        return
    try:
        redis.Redis(port=6379, socket_connect_timeout=1).ping()
    except redis.ConnectionError:
        pytest.skip("no redis-server on PATH and no Redis answering on 127.0.0.1:6379")
    yield "redis://127.0.0.1:6379/0"
