"""People and their saved reference photos (tables ``people`` and ``refs``).

A person is recorded on first use (to show the consent notice once) and may keep up to MAX_REFERENCES
checked photos; the photos themselves live in the content-addressed files.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

from bot.store.core import StoreCore, log
from bot.store.errors import NotFound
from bot.store.records import StoredReference

MAX_REFERENCES = 5
_REF_COLUMNS = "ref_id, user_id, sha256, verdict, advice, created_at, last_used_at"


def _reference(row: Sequence[Any]) -> StoredReference:
    ref_id, user_id, sha, verdict, advice, created_at, last_used_at = row
    return StoredReference(ref_id, user_id, sha, verdict, tuple(json.loads(advice)), created_at, last_used_at)


class ReferencesMixin(StoreCore):
    """Store methods for people and reference photos."""

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
                self._files.put_photo(data, sha)
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
                row = sql.execute(f"SELECT {_REF_COLUMNS} FROM refs WHERE ref_id = ?", (ref_id,)).fetchone()
            self._claim([sha])
            if replace:
                self._release(old)
            return _reference(row)

        return await self._call(add)

    async def references(self, user_id: str) -> list[StoredReference]:
        """This person's reference photos, oldest first."""
        def select() -> list[StoredReference]:
            return [_reference(row) for row in self._sql.execute(
                f"SELECT {_REF_COLUMNS} FROM refs WHERE user_id = ? ORDER BY created_at, ref_id", (user_id,))]

        return await self._call(select)

    async def reference_bytes(self, user_id: str, ref_id: int) -> bytes:
        """One of this person's photos; NotFound when it is missing or someone else's."""
        def read() -> bytes:
            row = self._sql.execute("SELECT sha256 FROM refs WHERE ref_id = ? AND user_id = ?",
                                    (ref_id, user_id)).fetchone()
            if row is None:
                raise NotFound("That reference photo does not exist.")
            return self._files.read_photo(row[0])

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
                    photos.append((sha, self._files.read_photo(sha)))
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
