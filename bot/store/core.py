"""The store's plumbing that every table group shares: lifecycle, the store thread, transactions, and the
rule that ties rows to files.

All SQLite work and every file write or unlink happens on one dedicated thread, awaited from the event
loop (``_call``), so the bot never blocks on the disk and the database and the folders change in one order
only. Rows go first and files follow: a crash in between leaves at worst an orphan file, which the sweep
removes. A file is unlinked only when no row in any table refers to its hash any more (``_release``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from bot.store.errors import StoreError, file_error, storage_error
from bot.store.files import FileStore, is_sha
from bot.store.schema import SHA_IS_REFERENCED, TABLES, connect
from generation.lifecycle import StartClose

log = logging.getLogger("bot.store")  # one logger for the whole store, as before it was split into modules
T = TypeVar("T")

# A photo from put_photo() is protected this long while its draft or job row is being written.
PENDING_GRACE_S = 900.0


class StoreCore(StartClose):
    """Opening and closing the store, and the helpers the table mixins build on (store thread only)."""

    def __init__(self, data_dir: str | Path, *, busy_timeout_s: float = 5.0) -> None:
        self.data_dir = Path(data_dir).expanduser()
        self.busy_timeout_s = busy_timeout_s
        self.db_path = self.data_dir / "closeup.db"
        self._files = FileStore(self.data_dir)
        self.photos_dir = self._files.photos_dir
        self.results_dir = self._files.results_dir
        self._thread: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        # sha -> when put_photo() stored it; only touched on the store thread.
        self._pending: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="closeup-store")
        try:
            await self._call(self._open)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(thread, conn.close)
        thread.shutdown(wait=True)

    # ------------------------------------------------------------------ plumbing (store thread only)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._thread is None:
            raise StoreError("The bot's store is not started.")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, functools.partial(fn, *args))
        except sqlite3.Error as exc:
            raise storage_error(exc, self.db_path) from None
        except OSError as exc:
            raise file_error(exc, self.data_dir) from None

    def _open(self) -> None:
        self._files.prepare()
        self._conn = connect(self.db_path, self.busy_timeout_s)

    @property
    def _sql(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("The bot's store is not started.")
        return self._conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; rolled back on any error, a failed COMMIT included."""
        sql = self._sql
        sql.execute("BEGIN IMMEDIATE")
        try:
            yield sql
            sql.execute("COMMIT")
        except BaseException:
            if sql.in_transaction:
                sql.execute("ROLLBACK")
            raise

    def _scrub(self) -> None:
        """Push deleted rows out of the write-ahead log too: checkpoint it and cut it to zero length."""
        self._sql.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ------------------------------------------------------------------ rows -> files

    def _is_referenced(self, sha: str) -> bool:
        return self._sql.execute(SHA_IS_REFERENCED, {"sha": sha}).fetchone() is not None

    def _is_pending(self, sha: str, now: float) -> bool:
        added = self._pending.get(sha)
        return added is not None and added > now - PENDING_GRACE_S

    def _release(self, shas: Iterable[str | None], *, keep_pending: bool = True) -> int:
        """Unlink the files of hashes no row refers to any more; call after the rows' COMMIT."""
        now = time.time()
        removed = 0
        for sha in set(shas):
            if not is_sha(sha) or self._is_referenced(sha):
                continue
            if keep_pending and self._is_pending(sha, now):
                continue
            self._pending.pop(sha, None)
            removed += self._files.unlink(sha)
        return removed

    def _claim(self, shas: Iterable[str | None]) -> None:
        """A row now refers to these photos: they no longer need put_photo()'s grace period."""
        for sha in shas:
            if sha is not None:
                self._pending.pop(sha, None)

    # ------------------------------------------------------------------ counts

    async def counts(self) -> dict[str, int]:
        """Rows per table (tests, and /metrics later)."""
        def count() -> dict[str, int]:
            return {key: self._sql.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                    for key, table in TABLES.items()}

        return await self._call(count)
