"""Drafts (table ``drafts``) and the loose photos they stage.

A draft is a checked photo waiting for the person to press Generate. ``put_photo`` stores its photo first
(protected by a grace period until a row claims it); ``save_draft`` then records the row.
"""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path

from bot.store.core import StoreCore
from bot.store.errors import NotFound
from bot.store.records import Draft

_DRAFT_FIELDS = tuple(f.name for f in fields(Draft))


class DraftsMixin(StoreCore):
    """Store methods for staged photos and drafts."""

    # ------------------------------------------------------------------ photos

    def photo_path(self, sha: str) -> Path:
        """Where a stored photo lives, whatever its extension (sync: a few stat calls); NotFound if missing."""
        path = self._files.find_photo(sha)
        if path is None:
            raise NotFound("That photo is no longer stored.")
        return path

    async def put_photo(self, data: bytes) -> str:
        """Store a photo for a draft or job and return its sha256; save the row that uses it soon after."""
        def put() -> str:
            sha = self._files.put_photo(data)
            self._pending[sha] = time.time()
            return sha

        return await self._call(put)

    async def photo_bytes(self, sha: str) -> bytes:
        return await self._call(self._files.read_photo, sha)

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
