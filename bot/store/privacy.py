"""Forgetting a person and the retention sweep: the two operations that cut across every table and file."""

from __future__ import annotations

import time

from bot.store.core import PENDING_GRACE_S, StoreCore, log
from bot.store.guilds import QUOTA_WINDOW_S
from bot.store.jobs import delete_jobs
from bot.store.records import ForgetReport
from bot.store.schema import REFERENCED_SHAS


class PrivacyMixin(StoreCore):
    """Store methods that delete what the bot no longer needs to keep."""

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
                rows, job_shas = delete_jobs(sql, job_ids)
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
                rows += delete_jobs(sql, old_jobs)[0]
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

    def _sweep_files(self, now: float) -> int:
        """Unlink files no row refers to (put_photo()'s recent ones excepted) and temp files left by a crash."""
        self._pending = {sha: added for sha, added in self._pending.items() if added > now - PENDING_GRACE_S}
        referenced = {sha for (sha,) in self._sql.execute(REFERENCED_SHAS)}
        return self._files.sweep(now, keep=referenced | set(self._pending))
