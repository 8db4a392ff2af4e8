"""The bot's own store: people, reference photos, drafts, the Discord side of jobs, results, server settings.

One SQLite file (WAL) plus content-addressed files: ``photos/<sha256>.<ext>`` and ``results/<sha256>.png``.
The same bytes stored twice share one file, and a file is unlinked only when no row in any table
refers to its hash any more, so forgetting one person never breaks another's photos.

All SQLite work and every file write or unlink happens on one dedicated thread, awaited from the event
loop, so the bot never blocks on the disk and the database and the folders change in one order only.
Rows go first and files follow: a crash in between leaves at worst an orphan file, which the sweep
removes. Folders are private (0o700) because they hold people's faces.

The package, one job per module:

- ``schema``: the tables, their ordered migrations (``PRAGMA user_version``), opening the database;
- ``files``: the content-addressed files (hashing, atomic writes, reads, unlinks, folder permissions);
- ``errors`` and ``records``: what the store raises and the records it hands out;
- ``core``: lifecycle, the store thread (``_call``), transactions, and when a file may go;
- ``references``, ``drafts``, ``jobs``, ``results``, ``guilds``, ``privacy``: the rows, by table group,
  as mixins that ``Store`` below combines.

Everything the bot and its tests import comes from here: ``from bot.store import Store, JobRecord``.
"""

from __future__ import annotations

from bot.store.core import PENDING_GRACE_S
from bot.store.drafts import DraftsMixin
from bot.store.errors import NotFound, StoreError
from bot.store.files import PHOTO_EXTS, TEMP_GRACE_S, TMP_PREFIX
from bot.store.guilds import QUOTA_WINDOW_S, GuildsMixin
from bot.store.jobs import JobsMixin
from bot.store.privacy import PrivacyMixin
from bot.store.records import (
    FINISHED_STATES,
    NSFW_POLICIES,
    DayUsage,
    Draft,
    ForgetReport,
    GuildSettings,
    JobRecord,
    StoredReference,
    StoredResult,
)
from bot.store.references import MAX_REFERENCES, ReferencesMixin
from bot.store.results import ResultsMixin
from bot.store.schema import MIGRATIONS, REFERENCED_SHAS, SCHEMA, SCHEMA_VERSION, SHA_IS_REFERENCED, TABLES

__all__ = [
    "FINISHED_STATES",
    "MAX_REFERENCES",
    "MIGRATIONS",
    "NSFW_POLICIES",
    "PENDING_GRACE_S",
    "PHOTO_EXTS",
    "QUOTA_WINDOW_S",
    "REFERENCED_SHAS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SHA_IS_REFERENCED",
    "TABLES",
    "TEMP_GRACE_S",
    "TMP_PREFIX",
    "DayUsage",
    "Draft",
    "ForgetReport",
    "GuildSettings",
    "JobRecord",
    "NotFound",
    "Store",
    "StoreError",
    "StoredReference",
    "StoredResult",
]


class Store(ReferencesMixin, DraftsMixin, JobsMixin, ResultsMixin, GuildsMixin, PrivacyMixin):
    """The bot's SQLite store. Use ``async with Store(data_dir)`` or start()/close()."""
