"""Jobs and events on the wire: JSON round trips, and refusals of anything else."""

from __future__ import annotations

import json

import pytest

from generation.jobs import EventKind, JobEvent, JobFormatError, JobSpec, ResultImage


def test_spec_round_trip_and_defaults() -> None:
    spec = JobSpec(user_id="123", guild_id="456", prompt="hi", count=2, seed=7, references=("aGk=", "aGk="))
    again = JobSpec.from_json(spec.to_json())
    assert again == spec and again.references == ("aGk=", "aGk=")
    assert len(spec.job_id) == 32 and JobSpec(user_id="1", guild_id="2").job_id != spec.job_id


def test_event_round_trip_with_results() -> None:
    results = (ResultImage(png="eA==", seed=1, likeness=0.71, same_person=True, face_found=True, refined=False),
               ResultImage(png="eA==", seed=2, likeness=None, same_person=None, face_found=False, refined=False))
    event = JobEvent(EventKind.DONE, "abc", results=results, attempt=2)
    assert JobEvent.from_json(event.to_json()) == event
    progress = JobEvent(EventKind.PROGRESS, "abc", step=3, total=30)
    assert JobEvent.from_json(progress.to_json().encode()) == progress


@pytest.mark.parametrize(("text", "message"), [
    ("", "not valid JSON"),
    ("\xff", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"version": 2, "user_id": "1", "guild_id": "2"}', "version 2"),
    ('{"user_id": "1", "guild_id": "2"}', "version None"),
    ('{"version": 1, "guild_id": "2"}', "incomplete"),
    ('{"version": 1, "user_id": 5, "guild_id": "2"}', "user_id has the wrong type"),
    ('{"version": 1, "user_id": "1", "guild_id": "2", "count": true}', "count has the wrong type"),
    ('{"version": 1, "user_id": "1", "guild_id": "2", "count": "3"}', "count has the wrong type"),
    ('{"version": 1, "user_id": "1", "guild_id": "2", "references": [1]}', "base64 strings"),
    ('{"version": 1, "user_id": "1", "guild_id": "2", "__class__": "os.system"}', "unknown fields"),
])
def test_foreign_or_broken_specs_are_refused(text: str, message: str) -> None:
    with pytest.raises(JobFormatError, match=message):
        JobSpec.from_json(text)


def test_foreign_events_are_refused() -> None:
    with pytest.raises(JobFormatError, match="unknown event kind"):
        JobEvent.from_json(json.dumps({"kind": "exploded", "job_id": "x"}))
    with pytest.raises(JobFormatError, match="results must be a list"):
        JobEvent.from_json(json.dumps({"kind": "done", "job_id": "x", "results": "nope"}))
    with pytest.raises(JobFormatError):
        JobEvent.from_json(json.dumps({"kind": "done", "job_id": "x", "results": [{"png": 1}]}))
