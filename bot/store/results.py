"""A job's result images (table ``results``; the PNGs themselves are content-addressed files)."""

from __future__ import annotations

from collections.abc import Sequence

from bot.store.core import StoreCore
from bot.store.errors import NotFound
from bot.store.records import StoredResult


class ResultsMixin(StoreCore):
    """Store methods for result images."""

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
                    sha = self._files.put_result(png)
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
        return await self._call(self._files.read_result, sha)
