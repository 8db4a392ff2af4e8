"""The database side of the store: the tables (DDL), their migrations, and opening the SQLite file.

The schema version lives in SQLite's ``PRAGMA user_version``. ``MIGRATIONS`` is the ordered list of what each
version adds to a store written by the one before; opening a store applies the missing ones, the DDL and the
new version number in one transaction, so an upgrade lands whole or not at all, and doing it again changes
nothing. A store written by a newer closeup is refused.

Releases before the version moved to ``user_version`` kept it only in the ``meta`` table; it is still read
(such a store has ``user_version`` 0) and still written, so those releases keep refusing a store that a later
release upgraded.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from bot.store.errors import StoreError

# One entry per schema version, in order: entry ``n - 1`` holds the statements that take a store written at
# version ``n - 1`` to version ``n``. SCHEMA (CREATE ... IF NOT EXISTS) then adds any new table or index.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (),  # 1: the first release; SCHEMA creates every table
    ("ALTER TABLE jobs ADD COLUMN started_at REAL",  # 2: wait statistics and the daily quota
     "ALTER TABLE guild_settings ADD COLUMN daily_quota INTEGER"),
)
SCHEMA_VERSION = len(MIGRATIONS)

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


def stored_version(conn: sqlite3.Connection) -> int | None:
    """The schema version of the store behind ``conn``; None for a new (empty) one.

    ``user_version`` is 0 in a store written before the version moved there: the ``meta`` table says it. The
    larger of the two wins, so a store that either place marks as newer is refused.
    """
    user_version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        return user_version or None
    return max(user_version, int(row[0]))


def _apply_step(conn: sqlite3.Connection, statement: str) -> None:
    """One migration step; an ADD COLUMN whose column is already there (an interrupted upgrade of an older
    release) is skipped."""
    added = re.fullmatch(r"ALTER TABLE (\w+) ADD COLUMN (\w+) .*", statement)
    if added and added.group(2) in [row[1] for row in conn.execute(f"PRAGMA table_info({added.group(1)})")]:
        return
    conn.execute(statement)


def migrate(conn: sqlite3.Connection, db_path: Path) -> None:
    """Bring the store behind ``conn`` (autocommit mode) to SCHEMA_VERSION, atomically."""
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    version = stored_version(conn)
    if version is not None and version > SCHEMA_VERSION:
        raise StoreError(f"The bot's store {db_path} was written by a newer closeup (schema "
                         f"{version}; this release knows {SCHEMA_VERSION}). Upgrade closeup, or point "
                         "store.data_dir at another folder.")
    conn.execute("BEGIN IMMEDIATE")  # the upgrade and its version number land together, or neither
    try:
        if version is not None:
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    _apply_step(conn, statement)
        for statement in (part.strip() for part in SCHEMA.split(";")):
            if statement:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                     (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def connect(db_path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """Open (or create) the database file, private to the bot's user, in WAL mode and migrated."""
    conn = sqlite3.connect(db_path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    try:
        db_path.chmod(0o600)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        conn.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten, not left in free pages
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        migrate(conn, db_path)
    except BaseException:
        conn.close()
        raise
    return conn
