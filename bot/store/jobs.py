"""The Discord side of jobs (tables ``jobs`` and ``job_photos``): saving, finding, updating, deleting.

The queue keeps its own journal; these rows are what the bot needs to talk about a job in Discord and to
rebuild it (``job_photos`` names the photos it used, in order).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import fields
from typing import Any

from bot.store.core import StoreCore
from bot.store.records import FINISHED_STATES, JobRecord

_JOB_COLUMNS = tuple(f.name for f in fields(JobRecord) if f.name != "reference_shas")
_JOB_UPDATABLE = frozenset(f.name for f in fields(JobRecord)) - {"job_id"}


def set_job_photos(sql: sqlite3.Connection, job_id: str, shas: Sequence[str]) -> list[str]:
    """Replace a job's photo rows (inside the caller's transaction); returns the hashes they named before."""
    old = [sha for (sha,) in sql.execute("SELECT sha256 FROM job_photos WHERE job_id = ?", (job_id,))]
    sql.execute("DELETE FROM job_photos WHERE job_id = ?", (job_id,))
    sql.executemany("INSERT INTO job_photos (job_id, position, sha256) VALUES (?, ?, ?)",
                    [(job_id, position, sha) for position, sha in enumerate(shas)])
    return old


def delete_jobs(sql: sqlite3.Connection, job_ids: Iterable[str]) -> tuple[int, set[str]]:
    """Delete jobs with their photos' rows and results; returns rows deleted and the hashes they named."""
    rows, shas = 0, set()
    for job_id in job_ids:
        for table in ("job_photos", "results"):
            shas.update(sha for (sha,) in sql.execute(f"SELECT sha256 FROM {table} WHERE job_id = ?", (job_id,)))
            rows += sql.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,)).rowcount
        rows += sql.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,)).rowcount
    return rows, shas


class JobsMixin(StoreCore):
    """Store methods for jobs."""

    def _job_record(self, row: Sequence[Any]) -> JobRecord:
        values = dict(zip(_JOB_COLUMNS, row, strict=True))
        shas = tuple(sha for (sha,) in self._sql.execute(
            "SELECT sha256 FROM job_photos WHERE job_id = ? ORDER BY position", (values["job_id"],)))
        return JobRecord(reference_shas=shas, **values)

    def _unfinished(self, where: str = "", args: Sequence[Any] = ()) -> list[JobRecord]:
        """Unfinished jobs (optionally narrowed by ``where``), oldest first."""
        marks = ", ".join("?" * len(FINISHED_STATES))
        rows = self._sql.execute(f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs WHERE {where}state NOT IN ({marks}) "
                                 "ORDER BY created_at", (*args, *FINISHED_STATES)).fetchall()
        return [self._job_record(row) for row in rows]

    async def save_job(self, record: JobRecord) -> None:
        """Insert or replace the Discord side of a job; its results are kept."""
        def save() -> None:
            with self._write() as sql:
                sql.execute(f"INSERT OR REPLACE INTO jobs ({', '.join(_JOB_COLUMNS)}) "
                            f"VALUES ({', '.join('?' * len(_JOB_COLUMNS))})",
                            [getattr(record, name) for name in _JOB_COLUMNS])
                old = set_job_photos(sql, record.job_id, record.reference_shas)
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
                    old = set_job_photos(sql, job_id, tuple(shas))
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
        return await self._call(self._unfinished)

    async def guild_jobs(self, guild_id: str) -> list[JobRecord]:
        """This server's unfinished jobs, oldest first (what its admins see in /settings queue)."""
        return await self._call(self._unfinished, "guild_id = ? AND ", (guild_id,))

    async def delete_job(self, job_id: str) -> None:
        def delete() -> None:
            with self._write() as sql:
                _, shas = delete_jobs(sql, [job_id])
            self._release(shas)

        await self._call(delete)
