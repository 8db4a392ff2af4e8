"""What the store raises, and the translation of SQLite and OS failures into messages a server owner can act on.

Kept apart so the rest of the bot can catch ``StoreError`` and ``NotFound`` without caring which part of the
store (rows or files) failed.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from generation.sqlite_errors import sqlite_problem


class StoreError(RuntimeError):
    """The store cannot be read or written; the message tells the server owner what to do."""


class NotFound(LookupError):  # noqa: N818 - the name the bot code uses
    """No such row, or it belongs to someone else: callers must not be able to tell which."""


def storage_error(exc: sqlite3.Error, path: Path) -> StoreError:
    """A StoreError for a failed SQLite call on the database at ``path``."""
    return StoreError(sqlite_problem(exc, path, "the bot's store", "nothing was half-written",
                                     "saved reference photos and settings"))


def file_error(exc: OSError, folder: Path) -> StoreError:
    """A StoreError for a failed file operation under the data folder ``folder``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(f"The disk holding {folder} is full. Free some space and try again.")
    if exc.errno == errno.EFBIG:
        return StoreError(f"A file in {folder} hit the largest file size this system allows (a ulimit or quota); "
                          "raise the limit or free space and try again.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StoreError(f"The bot cannot write to {folder}: check the data folder's permissions "
                          "(the bot's user must own it).")
    return StoreError(f"The bot's data folder {folder} failed: {exc}")
