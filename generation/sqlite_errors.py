"""What went wrong with a SQLite file, in words a host can act on.

The bot's store and the local queue's job journal are both SQLite files that another process, a full disk
or a permission can break. sqlite3 reports all of these as OperationalError with a message; this is the one
place that reads those messages, so both files explain the same failure the same way.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def sqlite_problem(exc: sqlite3.Error, path: Path, what: str, kept: str, lost: str) -> str:
    """A sentence for ``exc`` on ``path``: ``what`` names the file ("the bot's store"), ``kept`` says what
    survives a failed write ("no job was lost"), ``lost`` what a fresh file starts without ("saved reference
    photos"), so the owner knows the cost before moving a damaged file aside."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return (f"{what.capitalize()} {path} is locked by another process. Is a second closeup running with the "
                "same data folder?")
    if "full" in text:
        return f"The disk holding {what} {path} is full. Free some space and try again; {kept}."
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return (f"{what.capitalize()} {path} cannot be written: check the data folder's permissions (closeup's "
                "user must own it).")
    if "malformed" in text or "not a database" in text:
        return (f"{what.capitalize()} {path} is damaged. Stop closeup and move the file aside; a fresh one is "
                f"started in its place ({lost} are lost).")
    if "disk i/o error" in text:
        return (f"Writing {what} {path} failed at the disk (full, over a size limit, or failing). Check free "
                f"space and the disk; {kept}.")
    return f"{what.capitalize()} {path} failed: {exc}"
