"""The bot's own store: people, reference photos, drafts, the Discord side of jobs, results, server settings.

One SQLite file (WAL) plus content-addressed files: ``photos/<sha256>.<ext>`` and ``results/<sha256>.png``.
The same bytes stored twice share one file, and a file is unlinked only when no row in any table
refers to its hash any more, so forgetting one person never breaks another's photos.

All SQLite work and every file write or unlink happens on one dedicated thread, awaited from the event
loop, so the bot never blocks on the disk and the database and the folders change in one order only.
Rows go first and files follow: a crash in between leaves at worst an orphan file, which the sweep
removes. Folders are private (0o700) because they hold people's faces.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hashlib
import json
import logging
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_VERSION = 2
QUOTA_WINDOW_S = 86400.0  # a server's daily quota counts the last 24 hours
# What each schema version adds to a store written by the one before (applied in order at start).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: ("ALTER TABLE jobs ADD COLUMN started_at REAL",
        "ALTER TABLE guild_settings ADD COLUMN daily_quota INTEGER"),
}
MAX_REFERENCES = 5
FINISHED_STATES = ("done", "failed", "cancelled", "deleted", "poisoned")
NSFW_POLICIES = ("block", "warn", "allow")
PHOTO_EXTS = ("jpg", "png", "webp", "gif", "heic", "bin")
TMP_PREFIX = ".tmp-"
# A photo from put_photo() is protected this long while its draft or job row is being written.
PENDING_GRACE_S = 900.0
# Temp files younger than this may belong to a write in progress (say, a second process by mistake).
TEMP_GRACE_S = 600.0
_SHA = re.compile(r"[0-9a-f]{64}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS people (
    user_id    TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_seen  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS refs (
    ref_id       INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    verdict      TEXT NOT NULL,
    advice       TEXT NOT NULL,
    created_at   REAL NOT NULL,
    last_used_at REAL NOT NULL,
    UNIQUE (user_id, sha256)
);
CREATE INDEX IF NOT EXISTS refs_sha ON refs(sha256);
CREATE TABLE IF NOT EXISTS drafts (
    draft_id             TEXT PRIMARY KEY,
    user_id              TEXT NOT NULL,
    guild_id             TEXT NOT NULL,
    channel_id           TEXT NOT NULL,
    photo_sha            TEXT NOT NULL,
    crop_sha             TEXT,
    verdict              TEXT NOT NULL,
    prompt               TEXT NOT NULL,
    style                TEXT NOT NULL,
    framing              TEXT,
    count                INTEGER NOT NULL,
    seed                 INTEGER,
    identity_strength    REAL,
    use_saved_references INTEGER NOT NULL,
    created_at           REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS drafts_user ON drafts(user_id);
CREATE INDEX IF NOT EXISTS drafts_photo ON drafts(photo_sha);
CREATE INDEX IF NOT EXISTS drafts_crop ON drafts(crop_sha);
CREATE INDEX IF NOT EXISTS drafts_created ON drafts(created_at);
CREATE TABLE IF NOT EXISTS jobs (
    job_id              TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL,
    guild_id            TEXT NOT NULL,
    channel_id          TEXT NOT NULL,
    spec_json           TEXT NOT NULL,
    application_id      TEXT NOT NULL,
    interaction_token   TEXT NOT NULL,
    token_expires_at    REAL NOT NULL,
    progress_message_id TEXT,
    state               TEXT NOT NULL,
    created_at          REAL NOT NULL,
    finished_at         REAL,
    attachment_limit    INTEGER NOT NULL DEFAULT 0,
    started_at          REAL
);
CREATE INDEX IF NOT EXISTS jobs_user ON jobs(user_id);
CREATE INDEX IF NOT EXISTS jobs_message ON jobs(progress_message_id);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs(finished_at);
CREATE INDEX IF NOT EXISTS jobs_guild_created ON jobs(guild_id, created_at);
CREATE INDEX IF NOT EXISTS jobs_guild_state ON jobs(guild_id, state);
CREATE TABLE IF NOT EXISTS job_photos (
    job_id   TEXT NOT NULL,
    position INTEGER NOT NULL,
    sha256   TEXT NOT NULL,
    PRIMARY KEY (job_id, position)
);
CREATE INDEX IF NOT EXISTS job_photos_sha ON job_photos(sha256);
CREATE TABLE IF NOT EXISTS results (
    job_id      TEXT NOT NULL,
    position    INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    seed        INTEGER NOT NULL,
    likeness    REAL,
    same_person INTEGER,
    face_found  INTEGER NOT NULL,
    refined     INTEGER NOT NULL,
    PRIMARY KEY (job_id, position)
);
CREATE INDEX IF NOT EXISTS results_sha ON results(sha256);
CREATE TABLE IF NOT EXISTS asks (
    guild_id TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    asked_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS asks_guild_user ON asks(guild_id, user_id, asked_at);
CREATE TABLE IF NOT EXISTS guild_settings (
    guild_id         TEXT PRIMARY KEY,
    allowed_channels TEXT NOT NULL,
    per_user         INTEGER,
    per_guild        INTEGER,
    nsfw_policy      TEXT,
    daily_quota      INTEGER
);
"""
# counts() key -> table.
TABLES = {"people": "people", "references": "refs", "drafts": "drafts", "jobs": "jobs",
          "job_photos": "job_photos", "results": "results", "guild_settings": "guild_settings", "asks": "asks"}
# Every hash any row refers to; a file whose hash is not here may go.
REFERENCED_SHAS = """
SELECT sha256 FROM refs UNION SELECT photo_sha FROM drafts
UNION SELECT crop_sha FROM drafts WHERE crop_sha IS NOT NULL
UNION SELECT sha256 FROM job_photos UNION SELECT sha256 FROM results
"""
SHA_IS_REFERENCED = """
SELECT 1 FROM refs WHERE sha256 = :sha UNION ALL SELECT 1 FROM drafts WHERE photo_sha = :sha OR crop_sha = :sha
UNION ALL SELECT 1 FROM job_photos WHERE sha256 = :sha UNION ALL SELECT 1 FROM results WHERE sha256 = :sha
LIMIT 1
"""


class StoreError(RuntimeError):
    """The store cannot be read or written; the message tells the server owner what to do."""


class NotFound(LookupError):  # noqa: N818 - the name the bot code uses
    """No such row, or it belongs to someone else: callers must not be able to tell which."""


@dataclass(frozen=True)
class StoredReference:
    ref_id: int
    user_id: str
    sha256: str
    verdict: str
    advice: tuple[str, ...]
    created_at: float
    last_used_at: float


@dataclass(frozen=True)
class Draft:
    """A checked photo waiting for the person to press Generate."""

    draft_id: str
    user_id: str
    guild_id: str
    channel_id: str
    photo_sha: str
    crop_sha: str | None
    verdict: str
    prompt: str
    style: str
    framing: str | None
    count: int
    seed: int | None
    identity_strength: float | None
    use_saved_references: bool
    created_at: float


@dataclass(frozen=True)
class JobRecord:
    """The Discord side of a queued job (the queue keeps its own journal).

    ``spec_json`` is the JobSpec without its photos (``references=[]``); ``reference_shas`` names the
    photos it used so a re-roll can rebuild it. The interaction token is a secret: it is kept out of repr.
    """

    job_id: str
    user_id: str
    guild_id: str
    channel_id: str
    spec_json: str
    reference_shas: tuple[str, ...]
    application_id: str
    interaction_token: str = field(repr=False)
    token_expires_at: float
    progress_message_id: str | None
    state: str
    created_at: float
    finished_at: float | None
    attachment_limit: int = 0  # the interaction's upload limit in bytes; 0 = Discord's default
    started_at: float | None = None  # when a worker first started it (for the server's wait statistics)


@dataclass(frozen=True)
class StoredResult:
    job_id: str
    index: int
    sha256: str
    seed: int
    likeness: float | None
    same_person: bool | None
    face_found: bool
    refined: bool


@dataclass(frozen=True)
class GuildSettings:
    """Per-server overrides; None (or no channels) means the config's defaults apply."""

    guild_id: str
    allowed_channels: tuple[str, ...] = ()  # empty = every channel
    per_user: int | None = None
    per_guild: int | None = None
    nsfw_policy: str | None = None  # block | warn | allow
    daily_quota: int | None = None  # portraits one person may ask for here per day; None = no quota

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_channels", tuple(str(c) for c in self.allowed_channels))
        if self.nsfw_policy is not None and self.nsfw_policy not in NSFW_POLICIES:
            raise ValueError(f"nsfw_policy must be one of {', '.join(NSFW_POLICIES)} (or unset), "
                             f"not {self.nsfw_policy!r}")
        for name in ("per_user", "per_guild"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} cannot be negative (got {value})")


@dataclass(frozen=True)
class ForgetReport:
    rows: int
    files: int


_DRAFT_FIELDS = tuple(f.name for f in fields(Draft))
@dataclass(frozen=True)
class DayUsage:
    day: str  # YYYY-MM-DD, UTC
    asked: int
    done: int
    failed: int
    cancelled: int
    average_wait_s: float | None  # asking to a worker starting it; None when nothing started that day


_JOB_COLUMNS = tuple(f.name for f in fields(JobRecord) if f.name != "reference_shas")
_JOB_UPDATABLE = frozenset(f.name for f in fields(JobRecord)) - {"job_id"}


def _apply_migration(conn: sqlite3.Connection, statement: str) -> None:
    """One migration step; an ADD COLUMN whose column is already there (an interrupted upgrade of an older
    release) is skipped."""
    added = re.fullmatch(r"ALTER TABLE (\w+) ADD COLUMN (\w+) .*", statement)
    if added and added.group(2) in [row[1] for row in conn.execute(f"PRAGMA table_info({added.group(1)})")]:
        return
    conn.execute(statement)


def _storage_error(exc: sqlite3.Error, path: Path) -> StoreError:
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return StoreError(f"The bot's store {path} is locked by another process. Is a second closeup bot "
                          "running with the same data folder?")
    if "full" in text:
        return StoreError(f"The disk holding the bot's store {path} is full. Free some space and try again.")
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return StoreError(f"The bot's store {path} cannot be written: check the data folder's permissions "
                          "(the bot's user must own it).")
    if "malformed" in text or "not a database" in text:
        return StoreError(f"The bot's store {path} is damaged. Stop the bot and move the file aside; the bot "
                          "starts a fresh one (saved reference photos are lost).")
    if "disk i/o error" in text:
        return StoreError(f"Writing the bot's store {path} failed at the disk (full, over a size limit, or "
                          "failing). Check free space and the disk; nothing was half-written.")
    return StoreError(f"The bot's store {path} failed: {exc}")


def _file_error(exc: OSError, folder: Path) -> StoreError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(f"The disk holding {folder} is full. Free some space and try again.")
    if exc.errno == errno.EFBIG:
        return StoreError(f"A file in {folder} hit the largest file size this system allows (a ulimit or quota); "
                          "raise the limit or free space and try again.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StoreError(f"The bot cannot write to {folder}: check the data folder's permissions "
                          "(the bot's user must own it).")
    return StoreError(f"The bot's data folder {folder} failed: {exc}")


def _photo_ext(data: bytes) -> str:
    """File extension from the bytes' magic; names and MIME types from Discord are not trusted."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[4:8] == b"ftyp" and data[8:12] in (
        b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif",
    ):
        return "heic"
    return "bin"


def _is_sha(sha: object) -> bool:
    """Hashes may come from a button's custom_id: only 64 lowercase hex digits ever reach a path."""
    return isinstance(sha, str) and _SHA.fullmatch(sha) is not None


def _sha_of(name: str) -> str | None:
    stem = name.split(".", 1)[0]
    return stem if _is_sha(stem) else None


class Store:
    """The bot's SQLite store. Use ``async with Store(data_dir)`` or start()/close()."""

    def __init__(self, data_dir: str | Path, *, busy_timeout_s: float = 5.0) -> None:
        self.data_dir = Path(data_dir).expanduser()
        self.busy_timeout_s = busy_timeout_s
        self.db_path = self.data_dir / "closeup.db"
        self.photos_dir = self.data_dir / "photos"
        self.results_dir = self.data_dir / "results"
        self._thread: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        # sha -> when put_photo() stored it; only touched on the store thread.
        self._pending: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Store:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

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
            raise _storage_error(exc, self.db_path) from None
        except OSError as exc:
            raise _file_error(exc, self.data_dir) from None

    def _open(self) -> None:
        for folder in (self.data_dir, self.photos_dir, self.results_dir):
            if not folder.is_dir():
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                folder.chmod(0o700)  # whatever the umask: these folders hold people's faces
        self.photos_dir.chmod(0o700)
        self.results_dir.chmod(0o700)
        conn = sqlite3.connect(self.db_path, timeout=self.busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        try:
            self.db_path.chmod(0o600)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            conn.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten, not left in free pages
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row is not None else None
            if version is not None and version > SCHEMA_VERSION:
                raise StoreError(f"The bot's store {self.db_path} was written by a newer closeup (schema "
                                 f"{version}; this release knows {SCHEMA_VERSION}). Upgrade closeup, or point "
                                 "store.data_dir at another folder.")
            conn.execute("BEGIN IMMEDIATE")  # the upgrade and its version number land together, or neither
            try:
                if version is not None:
                    for step in range(version + 1, SCHEMA_VERSION + 1):
                        for statement in MIGRATIONS.get(step, ()):
                            _apply_migration(conn, statement)
                for statement in (part.strip() for part in SCHEMA.split(";")):
                    if statement:
                        conn.execute(statement)
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except BaseException:
            conn.close()
            raise
        self._conn = conn

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

    def _write_file(self, folder: Path, name: str, data: bytes) -> None:
        """Atomic: readers see the whole file or none. An existing file already holds these bytes."""
        target = folder / name
        if target.exists():
            return
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX)  # mode 0o600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            Path(tmp).replace(target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _find_photo(self, sha: str) -> Path | None:
        if not _is_sha(sha):
            return None
        for ext in PHOTO_EXTS:
            path = self.photos_dir / f"{sha}.{ext}"
            if path.is_file():
                return path
        return None

    def _read_photo(self, sha: str) -> bytes:
        path = self._find_photo(sha)
        if path is None:
            raise NotFound("That photo is no longer stored.")
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFound("That photo is no longer stored.") from None

    def _store_photo(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if self._find_photo(sha) is None:
            self._write_file(self.photos_dir, f"{sha}.{_photo_ext(data)}", data)
        return sha

    def _is_referenced(self, sha: str) -> bool:
        return self._sql.execute(SHA_IS_REFERENCED, {"sha": sha}).fetchone() is not None

    def _is_pending(self, sha: str, now: float) -> bool:
        added = self._pending.get(sha)
        return added is not None and added > now - PENDING_GRACE_S

    def _unlink_sha(self, sha: str) -> int:
        removed = 0
        paths = [self.photos_dir / f"{sha}.{ext}" for ext in PHOTO_EXTS] + [self.results_dir / f"{sha}.png"]
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
        return removed

    def _release(self, shas: Iterable[str | None], *, keep_pending: bool = True) -> int:
        """Unlink the files of hashes no row refers to any more; call after the rows' COMMIT."""
        now = time.time()
        removed = 0
        for sha in set(shas):
            if not _is_sha(sha) or self._is_referenced(sha):
                continue
            if keep_pending and self._is_pending(sha, now):
                continue
            self._pending.pop(sha, None)
            removed += self._unlink_sha(sha)
        return removed

    def _claim(self, shas: Iterable[str | None]) -> None:
        """A row now refers to these photos: they no longer need put_photo()'s grace period."""
        for sha in shas:
            if sha is not None:
                self._pending.pop(sha, None)

    # ------------------------------------------------------------------ people

    async def touch_person(self, user_id: str) -> bool:
        """Record that this person used the bot; True the first time (show them the consent notice)."""
        def touch() -> bool:
            now = time.time()
            with self._write() as sql:
                new = sql.execute("INSERT OR IGNORE INTO people (user_id, first_seen, last_seen) VALUES (?, ?, ?)",
                                  (user_id, now, now)).rowcount == 1
                if not new:
                    sql.execute("UPDATE people SET last_seen = ? WHERE user_id = ?", (now, user_id))
            return new

        return await self._call(touch)

    # ------------------------------------------------------------------ references

    @staticmethod
    def _reference(row: Sequence[Any]) -> StoredReference:
        ref_id, user_id, sha, verdict, advice, created_at, last_used_at = row
        return StoredReference(ref_id, user_id, sha, verdict, tuple(json.loads(advice)), created_at, last_used_at)

    _REF_COLUMNS = "ref_id, user_id, sha256, verdict, advice, created_at, last_used_at"

    async def add_reference(self, user_id: str, data: bytes, verdict: str, advice: Sequence[str], *,
                            replace: bool = False) -> StoredReference:
        """Keep a checked photo as one of this person's references (at most five).

        The same bytes again return the existing row; ``replace`` makes this photo the only one.
        """
        def add() -> StoredReference:
            now = time.time()
            sha = hashlib.sha256(data).hexdigest()
            with self._write() as sql:
                old = [row[0] for row in sql.execute(
                    "SELECT sha256 FROM refs WHERE user_id = ? AND sha256 != ?", (user_id, sha))]
                existing = sql.execute("SELECT ref_id FROM refs WHERE user_id = ? AND sha256 = ?",
                                       (user_id, sha)).fetchone()
                if existing is None and not replace and len(old) >= MAX_REFERENCES:
                    raise ValueError(f"You already have {MAX_REFERENCES} reference photos, the most the bot keeps. "
                                     "Delete one before adding another, or replace them all with this photo.")
                self._store_photo(data)
                if existing is None:
                    ref_id = sql.execute(
                        "INSERT INTO refs (user_id, sha256, verdict, advice, created_at, last_used_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (user_id, sha, verdict, json.dumps(list(advice)), now, now),
                    ).lastrowid
                else:
                    ref_id = existing[0]
                    sql.execute("UPDATE refs SET last_used_at = ? WHERE ref_id = ?", (now, ref_id))
                if replace:
                    sql.execute("DELETE FROM refs WHERE user_id = ? AND ref_id != ?", (user_id, ref_id))
                row = sql.execute(f"SELECT {self._REF_COLUMNS} FROM refs WHERE ref_id = ?", (ref_id,)).fetchone()
            self._claim([sha])
            if replace:
                self._release(old)
            return self._reference(row)

        return await self._call(add)

    async def references(self, user_id: str) -> list[StoredReference]:
        """This person's reference photos, oldest first."""
        def select() -> list[StoredReference]:
            return [self._reference(row) for row in self._sql.execute(
                f"SELECT {self._REF_COLUMNS} FROM refs WHERE user_id = ? ORDER BY created_at, ref_id", (user_id,))]

        return await self._call(select)

    async def reference_bytes(self, user_id: str, ref_id: int) -> bytes:
        """One of this person's photos; NotFound when it is missing or someone else's."""
        def read() -> bytes:
            row = self._sql.execute("SELECT sha256 FROM refs WHERE ref_id = ? AND user_id = ?",
                                    (ref_id, user_id)).fetchone()
            if row is None:
                raise NotFound("That reference photo does not exist.")
            return self._read_photo(row[0])

        return await self._call(read)

    async def reference_photos(self, user_id: str) -> list[bytes]:
        """All of this person's photos for a job, oldest first; using them keeps them from the sweep."""
        return [data for _, data in await self.reference_set(user_id)]

    async def reference_set(self, user_id: str) -> list[tuple[str, bytes]]:
        """(sha256, bytes) of each of this person's photos, oldest first; marks them used."""
        def read() -> list[tuple[str, bytes]]:
            now = time.time()
            with self._write() as sql:
                rows = sql.execute("SELECT ref_id, sha256 FROM refs WHERE user_id = ? ORDER BY created_at, ref_id",
                                   (user_id,)).fetchall()
                sql.execute("UPDATE refs SET last_used_at = ? WHERE user_id = ?", (now, user_id))
            photos = []
            for ref_id, sha in rows:
                try:
                    photos.append((sha, self._read_photo(sha)))
                except NotFound:
                    log.warning("store: the file of reference %s is missing; skipped", ref_id)
            return photos

        return await self._call(read)

    async def delete_reference(self, user_id: str, ref_id: int) -> None:
        """Delete one of this person's photos; NotFound when it is missing or someone else's."""
        def delete() -> None:
            with self._write() as sql:
                row = sql.execute("SELECT sha256 FROM refs WHERE ref_id = ? AND user_id = ?",
                                  (ref_id, user_id)).fetchone()
                if row is None:
                    raise NotFound("That reference photo does not exist.")
                sql.execute("DELETE FROM refs WHERE ref_id = ?", (ref_id,))
            self._release([row[0]])

        await self._call(delete)

    # ------------------------------------------------------------------ photos

    def photo_path(self, sha: str) -> Path:
        """Where a stored photo lives, whatever its extension (sync: a few stat calls); NotFound if missing."""
        path = self._find_photo(sha)
        if path is None:
            raise NotFound("That photo is no longer stored.")
        return path

    async def put_photo(self, data: bytes) -> str:
        """Store a photo for a draft or job and return its sha256; save the row that uses it soon after."""
        def put() -> str:
            sha = self._store_photo(data)
            self._pending[sha] = time.time()
            return sha

        return await self._call(put)

    async def photo_bytes(self, sha: str) -> bytes:
        return await self._call(self._read_photo, sha)

    # ------------------------------------------------------------------ drafts

    async def save_draft(self, draft: Draft) -> None:
        """Insert or replace a draft; the photos it names must have been stored with put_photo()."""
        def save() -> None:
            values = [getattr(draft, name) for name in _DRAFT_FIELDS]
            with self._write() as sql:
                old = sql.execute("SELECT photo_sha, crop_sha FROM drafts WHERE draft_id = ?",
                                  (draft.draft_id,)).fetchone()
                sql.execute(f"INSERT OR REPLACE INTO drafts ({', '.join(_DRAFT_FIELDS)}) "
                            f"VALUES ({', '.join('?' * len(_DRAFT_FIELDS))})", values)
            self._claim([draft.photo_sha, draft.crop_sha])
            if old is not None:
                self._release(old)

        await self._call(save)

    async def draft(self, draft_id: str) -> Draft | None:
        def select() -> Draft | None:
            row = self._sql.execute(f"SELECT {', '.join(_DRAFT_FIELDS)} FROM drafts WHERE draft_id = ?",
                                    (draft_id,)).fetchone()
            if row is None:
                return None
            values = dict(zip(_DRAFT_FIELDS, row, strict=True))
            values["use_saved_references"] = bool(values["use_saved_references"])
            return Draft(**values)

        return await self._call(select)

    async def delete_draft(self, draft_id: str) -> None:
        """Delete a draft and its photos unless another row uses them (save the job built from it first)."""
        def delete() -> None:
            with self._write() as sql:
                old = sql.execute("SELECT photo_sha, crop_sha FROM drafts WHERE draft_id = ?",
                                  (draft_id,)).fetchone()
                sql.execute("DELETE FROM drafts WHERE draft_id = ?", (draft_id,))
            if old is not None:
                self._release(old)

        await self._call(delete)

    # ------------------------------------------------------------------ jobs

    def _job_record(self, row: Sequence[Any]) -> JobRecord:
        values = dict(zip(_JOB_COLUMNS, row, strict=True))
        shas = tuple(sha for (sha,) in self._sql.execute(
            "SELECT sha256 FROM job_photos WHERE job_id = ? ORDER BY position", (values["job_id"],)))
        return JobRecord(reference_shas=shas, **values)

    @staticmethod
    def _set_job_photos(sql: sqlite3.Connection, job_id: str, shas: Sequence[str]) -> list[str]:
        old = [sha for (sha,) in sql.execute("SELECT sha256 FROM job_photos WHERE job_id = ?", (job_id,))]
        sql.execute("DELETE FROM job_photos WHERE job_id = ?", (job_id,))
        sql.executemany("INSERT INTO job_photos (job_id, position, sha256) VALUES (?, ?, ?)",
                        [(job_id, position, sha) for position, sha in enumerate(shas)])
        return old

    async def save_job(self, record: JobRecord) -> None:
        """Insert or replace the Discord side of a job; its results are kept."""
        def save() -> None:
            with self._write() as sql:
                sql.execute(f"INSERT OR REPLACE INTO jobs ({', '.join(_JOB_COLUMNS)}) "
                            f"VALUES ({', '.join('?' * len(_JOB_COLUMNS))})",
                            [getattr(record, name) for name in _JOB_COLUMNS])
                old = self._set_job_photos(sql, record.job_id, record.reference_shas)
            self._claim(record.reference_shas)
            self._release(old)

        await self._call(save)

    async def job(self, job_id: str) -> JobRecord | None:
        def select() -> JobRecord | None:
            row = self._sql.execute(f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs WHERE job_id = ?",
                                    (job_id,)).fetchone()
            return None if row is None else self._job_record(row)

        return await self._call(select)

    async def job_by_message(self, message_id: str) -> JobRecord | None:
        """The job whose progress/result message this is (a reply to it swaps the reference)."""
        def select() -> JobRecord | None:
            row = self._sql.execute(f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs WHERE progress_message_id = ?",
                                    (message_id,)).fetchone()
            return None if row is None else self._job_record(row)

        return await self._call(select)

    async def update_job(self, job_id: str, **fields: Any) -> None:
        """Change some fields of a job. A job forgotten meanwhile (/forget) is not an error: nothing happens."""
        unknown = sorted(set(fields) - _JOB_UPDATABLE)
        if unknown:
            raise TypeError(f"update_job() cannot set {', '.join(unknown)}; it sets JobRecord fields other "
                            "than job_id")
        shas = fields.pop("reference_shas", None)

        def update() -> None:
            old: list[str] = []
            with self._write() as sql:
                if sql.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone() is None:
                    return
                if fields:
                    assignments = ", ".join(f"{name} = ?" for name in fields)  # names checked above
                    sql.execute(f"UPDATE jobs SET {assignments} WHERE job_id = ?", (*fields.values(), job_id))
                if shas is not None:
                    old = self._set_job_photos(sql, job_id, tuple(shas))
            if shas is not None:
                self._claim(shas)
                self._release(old)

        await self._call(update)

    async def active_counts(self, guild_id: str, user_id: str) -> tuple[int, int]:
        """(this server's unfinished jobs, this person's among them), counted by SQLite on an index."""
        def count() -> tuple[int, int]:
            marks = ", ".join("?" * len(FINISHED_STATES))
            row = self._sql.execute(
                f"SELECT COUNT(*), COALESCE(SUM(user_id = ?), 0) FROM jobs WHERE guild_id = ? AND state NOT IN "
                f"({marks})", (user_id, guild_id, *FINISHED_STATES)).fetchone()
            return int(row[0]), int(row[1])

        return await self._call(count)

    async def unfinished_jobs(self) -> list[JobRecord]:
        """Jobs to pick up again after a restart, oldest first."""
        def select() -> list[JobRecord]:
            marks = ", ".join("?" * len(FINISHED_STATES))
            rows = self._sql.execute(f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs WHERE state NOT IN ({marks}) "
                                     "ORDER BY created_at", FINISHED_STATES).fetchall()
            return [self._job_record(row) for row in rows]

        return await self._call(select)

    @staticmethod
    def _delete_jobs(sql: sqlite3.Connection, job_ids: Iterable[str]) -> tuple[int, set[str]]:
        """Delete jobs with their photos' rows and results; returns rows deleted and the hashes they named."""
        rows, shas = 0, set()
        for job_id in job_ids:
            for table in ("job_photos", "results"):
                shas.update(sha for (sha,) in sql.execute(f"SELECT sha256 FROM {table} WHERE job_id = ?", (job_id,)))
                rows += sql.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,)).rowcount
            rows += sql.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,)).rowcount
        return rows, shas

    async def delete_job(self, job_id: str) -> None:
        def delete() -> None:
            with self._write() as sql:
                _, shas = self._delete_jobs(sql, [job_id])
            self._release(shas)

        await self._call(delete)

    # ------------------------------------------------------------------ results

    async def save_results(self, job_id: str,
                           items: Sequence[tuple[bytes, int, float | None, bool | None, bool, bool]],
                           ) -> list[StoredResult]:
        """Store a job's images in order, replacing any saved before (a redelivered result is not doubled).

        NotFound when the job row is gone (forgotten while it ran): its images must not outlive it.
        """
        def save() -> list[StoredResult]:
            stored = []
            with self._write() as sql:
                if sql.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone() is None:
                    raise NotFound("That job no longer exists.")
                old = [sha for (sha,) in sql.execute("SELECT sha256 FROM results WHERE job_id = ?", (job_id,))]
                sql.execute("DELETE FROM results WHERE job_id = ?", (job_id,))
                for index, (png, seed, likeness, same_person, face_found, refined) in enumerate(items):
                    sha = hashlib.sha256(png).hexdigest()
                    self._write_file(self.results_dir, f"{sha}.png", png)
                    result = StoredResult(job_id, index, sha, int(seed), likeness, same_person, bool(face_found),
                                          bool(refined))
                    sql.execute("INSERT INTO results (job_id, position, sha256, seed, likeness, same_person, "
                                "face_found, refined) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                (job_id, index, sha, result.seed, likeness, same_person, result.face_found,
                                 result.refined))
                    stored.append(result)
            self._release(old)
            return stored

        return await self._call(save)

    async def results(self, job_id: str) -> list[StoredResult]:
        def select() -> list[StoredResult]:
            return [
                StoredResult(job_id, index, sha, seed, likeness, None if same is None else bool(same), bool(face),
                             bool(refined))
                for index, sha, seed, likeness, same, face, refined in self._sql.execute(
                    "SELECT position, sha256, seed, likeness, same_person, face_found, refined FROM results "
                    "WHERE job_id = ? ORDER BY position", (job_id,))
            ]

        return await self._call(select)

    async def result_bytes(self, sha: str) -> bytes:
        def read() -> bytes:
            if not _is_sha(sha):
                raise NotFound("That image is no longer stored.")
            try:
                return (self.results_dir / f"{sha}.png").read_bytes()
            except FileNotFoundError:
                raise NotFound("That image is no longer stored.") from None

        return await self._call(read)

    # ------------------------------------------------------------------ guild settings

    async def guild_settings(self, guild_id: str) -> GuildSettings:
        """This server's settings; the defaults when its owner never changed any."""
        def select() -> GuildSettings:
            row = self._sql.execute("SELECT allowed_channels, per_user, per_guild, nsfw_policy, daily_quota "
                                    "FROM guild_settings WHERE guild_id = ?", (guild_id,)).fetchone()
            if row is None:
                return GuildSettings(guild_id)
            channels, per_user, per_guild, nsfw_policy, daily_quota = row
            return GuildSettings(guild_id, tuple(json.loads(channels)), per_user, per_guild, nsfw_policy, daily_quota)

        return await self._call(select)

    async def set_guild_settings(self, settings: GuildSettings) -> None:
        await self._call(lambda: self._sql.execute(
            "INSERT OR REPLACE INTO guild_settings (guild_id, allowed_channels, per_user, per_guild, nsfw_policy, "
            "daily_quota) VALUES (?, ?, ?, ?, ?, ?)",
            (settings.guild_id, json.dumps(list(settings.allowed_channels)), settings.per_user, settings.per_guild,
             settings.nsfw_policy, settings.daily_quota)))

    async def guild_jobs(self, guild_id: str) -> list[JobRecord]:
        """This server's unfinished jobs, oldest first (what its admins see in /settings queue)."""
        def select() -> list[JobRecord]:
            marks = ", ".join("?" * len(FINISHED_STATES))
            rows = self._sql.execute(f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs WHERE guild_id = ? AND state NOT IN "
                                     f"({marks}) ORDER BY created_at", (guild_id, *FINISHED_STATES)).fetchall()
            return [self._job_record(row) for row in rows]

        return await self._call(select)

    async def take_quota(self, guild_id: str, user_id: str, quota: int, now: float) -> float | None:
        """Count one portrait against this person's daily quota here, in one write transaction (two clicks
        at once cannot both slip through); None when taken, else when the oldest of the window expires.
        Kept apart from the jobs, so deleting a result does not give the portrait back."""
        def take() -> float | None:
            with self._write() as sql:
                count, oldest = sql.execute(
                    "SELECT COUNT(*), MIN(asked_at) FROM asks WHERE guild_id = ? AND user_id = ? AND asked_at >= ?",
                    (guild_id, user_id, now - QUOTA_WINDOW_S)).fetchone()
                if count >= quota:
                    return float(oldest) + QUOTA_WINDOW_S
                sql.execute("INSERT INTO asks (guild_id, user_id, asked_at) VALUES (?, ?, ?)", (guild_id, user_id, now))
                return None

        return await self._call(take)

    async def give_back_quota(self, guild_id: str, user_id: str, asked_at: float) -> None:
        """A portrait counted by take_quota that never reached the queue."""
        await self._call(lambda: self._sql.execute(
            "DELETE FROM asks WHERE rowid = (SELECT rowid FROM asks WHERE guild_id = ? AND user_id = ? AND "
            "asked_at = ? LIMIT 1)", (guild_id, user_id, asked_at)))

    async def usage(self, guild_id: str, since: float) -> list[DayUsage]:
        """Per UTC day since ``since``: portraits asked for, finished, failed, cancelled, and the average
        wait from asking to a worker starting it (jobs that started)."""
        def select() -> list[DayUsage]:
            rows = self._sql.execute(
                "SELECT date(created_at, 'unixepoch') AS day, COUNT(*), SUM(state = 'done'), "
                "SUM(state IN ('failed', 'poisoned')), SUM(state = 'cancelled'), "
                "AVG(CASE WHEN started_at IS NOT NULL THEN started_at - created_at END) "
                "FROM jobs WHERE guild_id = ? AND created_at >= ? GROUP BY day ORDER BY day",
                (guild_id, since)).fetchall()
            return [DayUsage(day, int(asked), int(done or 0), int(failed or 0), int(cancelled or 0), wait)
                    for day, asked, done, failed, cancelled, wait in rows]

        return await self._call(select)

    # ------------------------------------------------------------------ privacy

    async def forget(self, user_id: str) -> ForgetReport:
        """Delete every row about this person in one transaction, then every file no other row uses."""
        def forget() -> ForgetReport:
            with self._write() as sql:
                shas = {sha for (sha,) in sql.execute("SELECT sha256 FROM refs WHERE user_id = ?", (user_id,))}
                for photo, crop in sql.execute("SELECT photo_sha, crop_sha FROM drafts WHERE user_id = ?",
                                               (user_id,)).fetchall():
                    shas.update(sha for sha in (photo, crop) if sha)
                job_ids = [job_id for (job_id,) in sql.execute("SELECT job_id FROM jobs WHERE user_id = ?",
                                                               (user_id,)).fetchall()]
                rows, job_shas = self._delete_jobs(sql, job_ids)
                shas |= job_shas
                for table in ("refs", "drafts", "people", "asks"):
                    rows += sql.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,)).rowcount
            # Their photos go now, even ones put_photo() stored moments ago.
            report = ForgetReport(rows=rows, files=self._release(shas, keep_pending=False))
            self._scrub()
            return report

        return await self._call(forget)

    async def sweep(self, *, retention_s: float, draft_ttl_s: float, now: float | None = None) -> int:
        """Apply the retention periods and clean up files no row uses; returns rows plus files removed."""
        def sweep() -> int:
            at = time.time() if now is None else now
            cutoff = at - retention_s
            with self._write() as sql:
                rows = sql.execute("DELETE FROM drafts WHERE created_at < ?", (at - draft_ttl_s,)).rowcount
                old_jobs = [job_id for (job_id,) in sql.execute(
                    "SELECT job_id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?", (cutoff,)).fetchall()]
                rows += self._delete_jobs(sql, old_jobs)[0]
                for table in ("job_photos", "results"):  # rows left behind by a job deleted elsewhere
                    rows += sql.execute(f"DELETE FROM {table} WHERE job_id NOT IN (SELECT job_id FROM jobs)").rowcount
                rows += sql.execute("DELETE FROM refs WHERE last_used_at < ?", (cutoff,)).rowcount
                rows += sql.execute("DELETE FROM asks WHERE asked_at < ?", (at - QUOTA_WINDOW_S,)).rowcount
                rows += sql.execute(
                    "DELETE FROM people WHERE last_seen < ? AND user_id NOT IN (SELECT user_id FROM refs) "
                    "AND user_id NOT IN (SELECT user_id FROM drafts) AND user_id NOT IN (SELECT user_id FROM jobs)",
                    (cutoff,)).rowcount
            files = self._sweep_files(at)
            if rows:
                self._scrub()
            if rows or files:
                log.info("store: sweep removed %d row(s) and %d file(s)", rows, files)
            return rows + files

        return await self._call(sweep)

    def _scrub(self) -> None:
        """Push deleted rows out of the write-ahead log too: checkpoint it and cut it to zero length."""
        self._sql.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _sweep_files(self, now: float) -> int:
        """Unlink files no row refers to (put_photo()'s recent ones excepted) and temp files left by a crash."""
        self._pending = {sha: added for sha, added in self._pending.items() if added > now - PENDING_GRACE_S}
        referenced = {sha for (sha,) in self._sql.execute(REFERENCED_SHAS)}
        removed = 0
        for folder in (self.photos_dir, self.results_dir):
            for path in folder.iterdir():
                if path.name.startswith(TMP_PREFIX):
                    with contextlib.suppress(FileNotFoundError):
                        if path.stat().st_mtime < now - TEMP_GRACE_S:
                            path.unlink()
                            removed += 1
                    continue
                sha = _sha_of(path.name)
                if sha is None or sha in referenced or sha in self._pending or not path.is_file():
                    continue  # not ours, still used, or about to be
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
        return removed

    async def counts(self) -> dict[str, int]:
        """Rows per table (tests, and /metrics later)."""
        def count() -> dict[str, int]:
            return {key: self._sql.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                    for key, table in TABLES.items()}

        return await self._call(count)
