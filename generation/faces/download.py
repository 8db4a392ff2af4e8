"""Fetching model files on first use: resumable HTTP downloads and one downloader per folder.

Shared by the face backends whose models are downloaded the first time they are needed (insightface's packs,
OpenCV Zoo's ONNX files). A cut download keeps its ``.part`` file and the next try resumes it (HTTP Range); a
bot and a worker sharing the folder take a file lock, so only one of them downloads.
"""

from __future__ import annotations

import contextlib
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 60


def fetch(url: str, part: Path, label: str, attempts: int = 3) -> None:
    """Download ``url`` into ``part``, resuming what is already there (HTTP Range), retrying a cut
    connection, and logging progress every tenth of the file."""
    for attempt in range(1, attempts + 1):
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
                resumed = response.status == 206
                total = int(response.headers.get("Content-Length") or 0) + (have if resumed else 0)
                done = have if resumed else 0
                if have and not resumed:
                    log.info("%s: the server does not resume downloads; starting over", label)
                shown = -1
                with part.open("ab" if resumed else "wb") as out:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        done += len(chunk)
                        tenth = int(10 * done / total) if total else -1
                        if tenth > shown:
                            shown = tenth
                            log.info("%s: %.1f of %.1f MB (%d%%)", label, done / 1e6, total / 1e6,
                                     10 * tenth)
                if total and done < total:
                    raise ConnectionError(f"the connection closed after {done} of {total} bytes")
            return
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # nothing left to fetch: the part is the whole file
                return
            raise
        except (ConnectionError, TimeoutError, urllib.error.URLError) as exc:
            if attempt == attempts or (isinstance(exc, urllib.error.URLError) and not part.exists()):
                raise
            log.warning("%s: download interrupted (%s); resuming", label, exc)
            time.sleep(1.0)


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """An exclusive lock between processes (POSIX flock; elsewhere, no lock)."""
    try:
        import fcntl
    except ImportError:  # Windows: downloads there are one process's
        yield
        return
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
