"""The bot's store on real SQLite and real files: privacy (forget, sweep, ownership) and content addressing."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import sqlite3
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bot.store import (
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
    Draft,
    ForgetReport,
    GuildSettings,
    JobRecord,
    NotFound,
    Store,
    StoreError,
)

JPEG = b"\xff\xd8\xff\xe0" + b"jpeg-one" * 8
JPEG2 = b"\xff\xd8\xff\xe0" + b"jpeg-two" * 8
PNG = b"\x89PNG\r\n\x1a\n" + b"png-photo" * 8
WEBP = b"RIFF\x00\x00\x00\x00WEBP" + b"webp" * 8
TOKEN = "secret-interaction-token-0123456789"
PNG_HEAD = b"\x89PNG\r\n\x1a\n"


def run(tmp_path: Path, scenario: Callable[[Store], Awaitable[None]], **options: float) -> None:
    async def main() -> None:
        async with Store(tmp_path / "data", **options) as store:
            await scenario(store)

    asyncio.run(main())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def photo(n: int) -> bytes:
    return b"\xff\xd8\xff\xe0" + f"photo-{n}".encode() * 8


def files(store: Store) -> set[str]:
    return {p.name for folder in (store.photos_dir, store.results_dir) for p in folder.iterdir()}


def draft(draft_id: str, user_id: str, photo_sha: str, *, crop_sha: str | None = None,
          created_at: float | None = None) -> Draft:
    return Draft(draft_id, user_id, "g1", "c1", photo_sha, crop_sha, "good", "a portrait", "studio-headshot", None,
                 2, 42, 0.8, True, time.time() if created_at is None else created_at)


def job(job_id: str, user_id: str, shas: tuple[str, ...] = (), *, state: str = "queued",
        finished_at: float | None = None) -> JobRecord:
    return JobRecord(job_id, user_id, "g1", "c1", '{"references":[]}', shas, "app", TOKEN, time.time() + 900,
                     None, state, time.time(), finished_at)


def result(data: bytes, seed: int = 1) -> tuple[bytes, int, float | None, bool | None, bool, bool]:
    return (PNG_HEAD + data, seed, 0.7, True, True, False)


def test_add_list_delete_references(tmp_path: Path) -> None:
    async def scenario(store: Store) -> None:
        first = await store.add_reference("alice", JPEG, "good", ["Face the light"])
        second = await store.add_reference("alice", PNG, "ok", [])
        assert first.sha256 == sha(JPEG) and first.advice == ("Face the light",) and first.user_id == "alice"
        assert [r.ref_id for r in await store.references("alice")] == [first.ref_id, second.ref_id]
        assert await store.reference_bytes("alice", first.ref_id) == JPEG
        assert store.photo_path(sha(JPEG)).name == f"{sha(JPEG)}.jpg"
        assert store.photo_path(sha(PNG)).name == f"{sha(PNG)}.png"
        assert await store.reference_photos("alice") == [JPEG, PNG]
        await store.delete_reference("alice", first.ref_id)
        assert [r.ref_id for r in await store.references("alice")] == [second.ref_id]
        assert files(store) == {f"{sha(PNG)}.png"}
        with pytest.raises(NotFound):
            store.photo_path(sha(JPEG))

    run(tmp_path, scenario)


def test_same_bytes_twice_is_one_row_and_one_file(tmp_path: Path) -> None:
    async def scenario(store: Store) -> None:
        first = await store.add_reference("alice", JPEG, "good", [])
        again = await store.add_reference("alice", JPEG, "good", [])
        assert again.ref_id == first.ref_id
        assert len(await store.references("alice")) == 1
        assert files(store) == {f"{sha(JPEG)}.jpg"}

    run(tmp_path, scenario)


def test_replace_keeps_only_the_new_photo(tmp_path: Path) -> None:
    async def scenario(store: Store) -> None:
        await store.add_reference("alice", JPEG, "good", [])
        await store.add_reference("alice", PNG, "good", [])
        new = await store.add_reference("alice", WEBP, "good", [], replace=True)
        assert await store.references("alice") == [new]
        assert files(store) == {f"{sha(WEBP)}.webp"}
        kept = await store.add_reference("alice", WEBP, "good", [], replace=True)  # same bytes: same row
        assert kept.ref_id == new.ref_id

    run(tmp_path, scenario)


def test_a_sixth_reference_is_refused(tmp_path: Path) -> None:
    async def scenario(store: Store) -> None:
        for n in range(5):
            await store.add_reference("alice", photo(n), "good", [])
        with pytest.raises(ValueError, match="5 reference photos"):
            await store.add_reference("alice", photo(5), "good", [])
        assert len(await store.references("alice")) == 5
        assert sha(photo(5)) not in {name.split(".")[0] for name in files(store)}
        await store.add_reference("alice", photo(0), "good", [])  # one already kept: fine
        only = await store.add_reference("alice", photo(5), "good", [], replace=True)
        assert await store.references("alice") == [only]

    run(tmp_path, scenario)


def test_nobody_reads_or_deletes_another_persons_reference(tmp_path: Path) -> None:
    async def scenario(store: Store) -> None:
        ref = await store.add_reference("alice", JPEG, "good", [])
        for call in (store.reference_bytes, store.delete_reference):
            with pytest.raises(NotFound):
                await call("mallory", ref.ref_id)
            with pytest.raises(NotFound):
                await call("alice", ref.ref_id + 100)
        assert await store.reference_bytes("alice", ref.ref_id) == JPEG
        with pytest.raises(NotFound):
            await store.photo_bytes("0" * 64)
        with pytest.raises(NotFound):
            store.photo_path("../closeup.db")
        with pytest.raises(NotFound):
            await store.result_bytes("../closeup")

    run(tmp_path, scenario)


def test_identical_photos_share_a_file_and_forgetting_one_person_keeps_it(tmp_path: Path) -> None:
    async def scenario(store: Store) -> None:
        await store.add_reference("alice", JPEG, "good", [])
        bobs = await store.add_reference("bob", JPEG, "good", [])
        assert files(store) == {f"{sha(JPEG)}.jpg"}
        assert await store.forget("alice") == ForgetReport(rows=1, files=0)
        assert files(store) == {f"{sha(JPEG)}.jpg"}
        assert await store.reference_bytes("bob", bobs.ref_id) == JPEG
        await store.delete_reference("bob", bobs.ref_id)
        assert files(store) == set()

    run(tmp_path, scenario)


def test_drafts_save_load_delete(tmp_path: Path) -> None:
    async def scenario(store: Store) -> None:
        photo_sha = await store.put_photo(JPEG)
        crop_sha = await store.put_photo(PNG)
        saved = draft("d1", "alice", photo_sha, crop_sha=crop_sha)
        await store.save_draft(saved)
        assert await store.draft("d1") == saved
        assert await store.draft("nope") is None
        assert await store.photo_bytes(photo_sha) == JPEG
        await store.delete_draft("d1")
        assert await store.draft("d1") is None
        assert files(store) == set()  # the draft's photos went with it
        await store.delete_draft("d1")  # twice is fine

    run(tmp_path, scenario)


def test_jobs_save_update_unfinished_delete(tmp_path: Path) -> None:
    async def scenario(store: Store) -> None:
        photo_sha = await store.put_photo(JPEG)
        record = job("j1", "alice", (photo_sha,))
        await store.save_job(record)
        await store.save_job(job("j2", "alice", state="done", finished_at=time.time()))
        assert await store.job("j1") == record
        assert await store.job("nope") is None
        await store.update_job("j1", state="running", progress_message_id="m1")
        updated = await store.job("j1")
        assert updated is not None and updated.state == "running" and updated.progress_message_id == "m1"
        png_sha = await store.put_photo(PNG)
        await store.update_job("j1", reference_shas=(png_sha,))
        assert (await store.job("j1")).reference_shas == (png_sha,)
        assert files(store) == {f"{png_sha}.png"}  # the photo the job no longer uses is gone
        with pytest.raises(TypeError):
            await store.update_job("j1", colour="red")
        with pytest.raises(TypeError):
            await store.update_job("j1", job_id="j9")
        await store.update_job("gone", state="done")  # forgotten meanwhile: nothing happens
        assert [r.job_id for r in await store.unfinished_jobs()] == ["j1"]
        await store.update_job("j1", state="done", finished_at=time.time())
        assert await store.unfinished_jobs() == []
        await store.save_results("j1", [result(b"one")])
        await store.delete_job("j1")
        assert await store.job("j1") is None and await store.results("j1") == []
        assert files(store) == set()
        # The token lives in its own column.
        with sqlite3.connect(store.db_path) as conn:
            assert conn.execute("SELECT interaction_token FROM jobs WHERE job_id = 'j2'").fetchone() == (TOKEN,)

    run(tmp_path, scenario)


def test_saving_results_again_replaces_them(tmp_path: Path) -> None:
    async def scenario(store: Store) -> None:
        await store.save_job(job("j1", "alice"))
        first = await store.save_results("j1", [result(b"one", 1), result(b"two", 2)])
        assert [(r.index, r.seed) for r in first] == [(0, 1), (1, 2)]
        again = await store.save_results("j1", [result(b"one", 1), result(b"two", 2)])
        assert again == first == await store.results("j1")
        assert (await store.counts())["results"] == 2
        replaced = await store.save_results("j1", [result(b"three", 3)])
        assert await store.results("j1") == replaced
        assert files(store) == {f"{replaced[0].sha256}.png"}
        assert await store.result_bytes(replaced[0].sha256) == PNG_HEAD + b"three"
        assert replaced[0].likeness == 0.7 and replaced[0].same_person is True and replaced[0].refined is False
        with pytest.raises(NotFound):
            await store.save_results("forgotten-job", [result(b"x")])

    run(tmp_path, scenario)


def test_forget_removes_every_row_and_file_of_the_person(tmp_path: Path) -> None:
    async def scenario(store: Store) -> None:
        for user, photos in (("alice", (JPEG, PNG)), ("bob", (JPEG2,))):
            assert await store.touch_person(user) is True
            for data in photos:
                await store.add_reference(user, data, "good", [])
            draft_sha = await store.put_photo(b"draft of " + user.encode())
            await store.save_draft(draft(f"d-{user}", user, draft_sha))
            await store.save_job(job(f"j-{user}", user, (draft_sha,)))
            await store.save_results(f"j-{user}", [result(user.encode())])
        await store.set_guild_settings(GuildSettings("g1", ("c1",)))
        bob_files = {f"{sha(JPEG2)}.jpg", f"{sha(b'draft of bob')}.bin", f"{sha(PNG_HEAD + b'bob')}.png"}
        assert len(files(store)) == 7 and bob_files <= files(store)

        report = await store.forget("alice")

        # Rows: person, 2 references, draft, job, job photo, result. Files: 2 references, the draft photo
        # (the job's too), the result.
        assert report == ForgetReport(rows=7, files=4)
        assert files(store) == bob_files
        assert await store.counts() == {"people": 1, "references": 1, "drafts": 1, "jobs": 1, "job_photos": 1,
                                        "results": 1, "guild_settings": 1, "asks": 0}
        with sqlite3.connect(store.db_path) as conn:
            for table, column in (("people", "user_id"), ("refs", "user_id"), ("drafts", "user_id"),
                                  ("jobs", "user_id"), ("job_photos", "job_id"), ("results", "job_id")):
                values = {row[0] for row in conn.execute(f"SELECT {column} FROM {table}")}
                assert not any("alice" in v for v in values), table
        assert await store.touch_person("alice") is True  # a stranger again: the consent notice shows again
        assert await store.touch_person("bob") is False
        assert len(await store.reference_photos("bob")) == 1

    run(tmp_path, scenario)


def test_sweep_applies_retention_and_removes_orphans(tmp_path: Path) -> None:
    day = 86400.0
    now = time.time() + 100 * day

    async def scenario(store: Store) -> None:
        await store.touch_person("old")
        await store.touch_person("fresh")
        await store.add_reference("old", JPEG, "good", [])
        await store.add_reference("fresh", PNG, "good", [])
        old_draft = await store.put_photo(b"old draft")
        fresh_draft = await store.put_photo(b"fresh draft")
        await store.save_draft(draft("d-old", "old", old_draft, created_at=now - 2 * 3600))
        await store.save_draft(draft("d-fresh", "fresh", fresh_draft, created_at=now - 60))
        await store.save_job(job("j-old", "old", state="done", finished_at=now - 31 * day))
        await store.save_job(job("j-fresh", "fresh", state="done", finished_at=now - day))
        await store.save_job(job("j-running", "old", state="running"))
        await store.save_results("j-old", [result(b"old")])
        await store.save_results("j-fresh", [result(b"fresh")])
        unused = await store.put_photo(b"never used")
        (store.photos_dir / f"{sha(b'crash')}.bin").write_bytes(b"crash")  # row deleted, unlink never ran
        (store.results_dir / ".tmp-leftover").write_bytes(b"half")
        (store.photos_dir / "README.txt").write_bytes(b"not ours")

        # At the real time nothing is due; the crash orphan goes, the unused photo is still pending.
        assert await store.sweep(retention_s=30 * day, draft_ttl_s=3600) == 1
        assert f"{unused}.bin" in files(store)

        with sqlite3.connect(store.db_path) as conn:  # "fresh" used its reference recently, "old" did not
            conn.execute("UPDATE refs SET last_used_at = ? WHERE user_id = 'old'", (now - 31 * day,))
            conn.execute("UPDATE refs SET last_used_at = ? WHERE user_id = 'fresh'", (now - day,))
            conn.execute("UPDATE people SET last_seen = ?", (now - 31 * day,))
        for name in (".tmp-leftover",):
            os.utime(store.results_dir / name, (now - day, now - day))

        removed = await store.sweep(retention_s=30 * day, draft_ttl_s=3600, now=now)

        assert await store.draft("d-old") is None and await store.draft("d-fresh") is not None
        assert await store.job("j-old") is None and await store.results("j-old") == []
        assert await store.job("j-fresh") is not None and len(await store.results("j-fresh")) == 1
        assert await store.job("j-running") is not None  # unfinished jobs stay
        assert await store.references("old") == [] and len(await store.references("fresh")) == 1
        # "old" still has a running job, so their person row stays; "fresh" has rows too.
        assert (await store.counts())["people"] == 2
        assert files(store) == {f"{sha(PNG)}.png", f"{fresh_draft}.bin", "README.txt",
                                f"{sha(PNG_HEAD + b'fresh')}.png"}
        # rows: old draft, old job + result, old ref; files: old ref, old draft photo, old result, unused, tmp
        assert removed == 4 + 5

        await store.delete_job("j-running")
        assert await store.sweep(retention_s=30 * day, draft_ttl_s=3600, now=now) == 1  # "old" has nothing left
        assert (await store.counts())["people"] == 1

    run(tmp_path, scenario)


def test_guild_settings_default_and_saved(tmp_path: Path) -> None:
    async def scenario(store: Store) -> None:
        assert await store.guild_settings("g1") == GuildSettings("g1")
        saved = GuildSettings("g1", ("c1", "c2"), per_user=1, per_guild=4, nsfw_policy="warn")
        await store.set_guild_settings(saved)
        assert await store.guild_settings("g1") == saved
        with pytest.raises(ValueError, match="nsfw_policy"):
            GuildSettings("g1", nsfw_policy="maybe")

    run(tmp_path, scenario)


def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    async def main() -> None:
        async with Store(tmp_path / "data") as store:
            assert await store.touch_person("alice") is True
            ref = await store.add_reference("alice", JPEG, "good", ["tip"])
            record = job("j1", "alice", (ref.sha256,))
            await store.save_job(record)
        async with Store(tmp_path / "data") as store:
            assert await store.touch_person("alice") is False
            assert await store.references("alice") == [ref]
            assert await store.reference_bytes("alice", ref.ref_id) == JPEG
            assert await store.job("j1") == record
            assert [r.job_id for r in await store.unfinished_jobs()] == ["j1"]

    asyncio.run(main())


def test_folders_are_private(tmp_path: Path) -> None:
    async def scenario(store: Store) -> None:
        await store.add_reference("alice", JPEG, "good", [])
        for folder in (store.data_dir, store.photos_dir, store.results_dir):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
        assert stat.S_IMODE(store.photo_path(sha(JPEG)).stat().st_mode) == 0o600

    run(tmp_path, scenario)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    run(tmp_path, lambda store: _noop())
    with sqlite3.connect(tmp_path / "data" / "closeup.db") as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match="newer closeup"):
        run(tmp_path, lambda store: _noop())


def test_a_locked_database_is_a_clear_error(tmp_path: Path) -> None:
    async def scenario(store: Store) -> None:
        other = sqlite3.connect(store.db_path, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            with pytest.raises(StoreError, match="locked"):
                await store.touch_person("alice")
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert await store.touch_person("alice") is True  # usable again once the lock is gone

    run(tmp_path, scenario, busy_timeout_s=0.05)


def test_a_damaged_database_says_what_moving_it_aside_costs(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "closeup.db").write_bytes(b"not a database at all " * 200)
    with pytest.raises(StoreError, match=r"damaged\. Stop closeup and move the file aside") as caught:
        run(tmp_path, lambda store: _noop())
    assert "saved reference photos and settings are lost" in str(caught.value)


def test_the_token_is_not_in_repr() -> None:
    record = job("j1", "alice")
    assert TOKEN not in repr(record) and "j1" in repr(record)


def test_not_started_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not started"):
        asyncio.run(Store(tmp_path).touch_person("alice"))


async def _noop() -> None:
    return None


def test_a_store_written_by_the_previous_release_is_upgraded_in_place(tmp_path: Path) -> None:
    """Schema 1 (no jobs.started_at, no guild_settings.daily_quota): its rows are kept, the columns added."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    with sqlite3.connect(data / "closeup.db") as conn:
        old = SCHEMA.replace(",\n    started_at          REAL", "").replace(",\n    daily_quota      INTEGER", "")
        old = old.replace("CREATE INDEX IF NOT EXISTS jobs_guild_created ON jobs(guild_id, created_at);", "")
        assert "started_at" not in old and "daily_quota" not in old
        conn.executescript(old)
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        conn.execute("INSERT INTO guild_settings VALUES ('g1', '[]', 2, NULL, 'warn')")

    async def scenario(store: Store) -> None:
        settings = await store.guild_settings("g1")
        assert (settings.per_user, settings.nsfw_policy, settings.daily_quota) == (2, "warn", None)
        await store.set_guild_settings(dataclasses.replace(settings, daily_quota=5))
        assert (await store.guild_settings("g1")).daily_quota == 5

    run(tmp_path, scenario)
    with sqlite3.connect(data / "closeup.db") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        assert "started_at" in [row[1] for row in conn.execute("PRAGMA table_info(jobs)")]


def test_the_daily_quota_is_counted_at_once_survives_deletes_and_forget_clears_it(tmp_path: Path) -> None:
    async def scenario(store: Store) -> None:
        now = 1_000_000.0
        # Two requests at the same moment with one slot: exactly one is counted.
        outcomes = await asyncio.gather(*(store.take_quota("g", "alice", 1, now) for _ in range(2)))
        assert sorted(outcomes, key=lambda o: o is not None) == [None, now + 86400.0]
        assert await store.take_quota("g", "bob", 1, now) is None  # per person
        assert await store.take_quota("g", "alice", 1, now + 86401.0) is None  # the window moved on
        await store.give_back_quota("g", "alice", now + 86401.0)
        assert await store.take_quota("g", "alice", 1, now + 86402.0) is None
        assert (await store.counts())["asks"] == 3  # alice twice, bob once
        await store.forget("alice")
        assert (await store.counts())["asks"] == 1  # bob's

    run(tmp_path, scenario)


def test_a_store_that_kept_its_version_in_the_meta_table_opens_and_keeps_its_rows(tmp_path: Path) -> None:
    """Before the version moved to PRAGMA user_version it lived only in meta: such a store opens as the schema it
    says, keeps every row and file, and carries its version in user_version afterwards (meta kept in step)."""
    data = tmp_path / "data"
    (data / "photos").mkdir(parents=True, mode=0o700)
    (data / "photos" / f"{sha(JPEG)}.jpg").write_bytes(JPEG)
    with sqlite3.connect(data / "closeup.db") as conn:  # as the release before the move wrote it
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("INSERT INTO people VALUES ('alice', 1.0, 2.0)")
        conn.execute("INSERT INTO refs (user_id, sha256, verdict, advice, created_at, last_used_at) "
                     "VALUES ('alice', ?, 'pass', '[\"good light\"]', ?, ?)", (sha(JPEG), time.time(), time.time()))
        conn.execute("INSERT INTO guild_settings VALUES ('g1', '[\"c1\"]', 2, NULL, 'warn', 3)")
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0

    async def scenario(store: Store) -> None:
        counts = await store.counts()
        assert (counts["people"], counts["references"], counts["guild_settings"]) == (1, 1, 1)
        (ref,) = await store.references("alice")
        assert ref.advice == ("good light",)
        assert await store.reference_bytes("alice", ref.ref_id) == JPEG
        assert await store.guild_settings("g1") == GuildSettings("g1", ("c1",), 2, None, "warn", 3)
        assert await store.touch_person("alice") is False  # still known: no second consent notice

    run(tmp_path, scenario)
    with sqlite3.connect(data / "closeup.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    run(tmp_path, lambda store: _noop())  # and opens again from user_version


def test_a_new_store_records_its_version_in_user_version(tmp_path: Path) -> None:
    run(tmp_path, lambda store: _noop())
    with sqlite3.connect(tmp_path / "data" / "closeup.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)


def test_a_newer_user_version_is_refused(tmp_path: Path) -> None:
    run(tmp_path, lambda store: _noop())
    with sqlite3.connect(tmp_path / "data" / "closeup.db") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer closeup"):
        run(tmp_path, lambda store: _noop())
