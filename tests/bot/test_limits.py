"""bot.limits: the per-person command rate and the global edit budget, on the real clock."""

from __future__ import annotations

import time

import pytest

from bot.limits import CommandRate, EditBudget


def test_command_rate_allows_up_to_rate_then_refuses_with_a_positive_wait() -> None:
    rate = CommandRate(rate=3, period_s=60.0)
    assert [rate.allow("alice") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = rate.allow("alice")
    assert wait > 0
    assert wait <= 60.0
    # Refused commands do not count: the wait does not grow with more attempts.
    again = rate.allow("alice")
    assert 0 < again <= wait


def test_command_rate_is_per_person() -> None:
    rate = CommandRate(rate=1, period_s=60.0)
    assert rate.allow("alice") == 0.0
    assert rate.allow("alice") > 0
    assert rate.allow("bob") == 0.0
    assert rate.allow("bob") > 0


def test_command_rate_allows_again_after_the_period() -> None:
    rate = CommandRate(rate=2, period_s=0.05)
    assert rate.allow("alice") == 0.0
    assert rate.allow("alice") == 0.0
    assert rate.allow("alice") > 0
    time.sleep(0.08)
    assert rate.allow("alice") == 0.0
    assert rate.allow("alice") == 0.0
    assert rate.allow("alice") > 0


def test_command_rate_wait_reflects_the_oldest_command() -> None:
    rate = CommandRate(rate=1, period_s=10.0)
    rate.allow("alice")
    wait = rate.allow("alice")
    assert 9.0 < wait <= 10.0


def test_command_rate_remembers_at_most_max_people_least_recent_first() -> None:
    rate = CommandRate(rate=1, period_s=60.0, max_people=2)
    assert rate.allow("a") == 0.0
    assert rate.allow("b") == 0.0
    assert rate.allow("a") > 0  # refused, but "a" is now the most recent
    assert rate.allow("c") == 0.0  # evicts "b", the least recently seen
    assert len(rate._people) == 2
    assert rate.allow("a") > 0  # still remembered
    assert rate.allow("c") > 0  # still remembered
    assert rate.allow("b") == 0.0  # forgotten, so a fresh allowance
    assert len(rate._people) == 2


def test_command_rate_many_people_stays_bounded() -> None:
    rate = CommandRate(rate=1, period_s=60.0, max_people=10)
    for n in range(100):
        assert rate.allow(str(n)) == 0.0
    assert len(rate._people) == 10
    assert rate.allow("99") > 0
    assert rate.allow("0") == 0.0


def test_edit_budget_takes_up_to_capacity_then_skips() -> None:
    budget = EditBudget(per_s=0.001, burst=3)
    assert [budget.take() for _ in range(3)] == [True, True, True]
    assert budget.skipped == 0
    assert budget.take() is False
    assert budget.take() is False
    assert budget.skipped == 2


def test_edit_budget_default_capacity_is_two_seconds_of_rate() -> None:
    assert EditBudget(per_s=10.0).capacity == pytest.approx(20.0)
    assert EditBudget(per_s=0.2).capacity == pytest.approx(1.0)  # never below one edit
    budget = EditBudget(per_s=0.001)
    assert budget.take() is True
    assert budget.take() is False
    assert budget.skipped == 1


def test_edit_budget_refills_over_time_but_not_beyond_capacity() -> None:
    budget = EditBudget(per_s=100.0, burst=2)
    assert budget.take() and budget.take()
    assert budget.take() is False
    time.sleep(0.05)  # five tokens' worth of time, capped at two
    assert budget.take() is True
    assert budget.take() is True
    assert budget.take() is False
    assert budget.skipped == 2


def test_cdn_downloads_wait_for_a_slot_rather_than_fail() -> None:
    """asyncio-throttle through its public API: the 11th download in a second waits, none is refused."""
    import asyncio

    from bot.limits import CDN_FETCHES_PER_S, cdn_throttle

    async def burst() -> list[float]:
        throttle = cdn_throttle()
        started = time.monotonic()
        times: list[float] = []

        async def fetch() -> None:
            async with throttle:
                times.append(time.monotonic() - started)

        await asyncio.gather(*(fetch() for _ in range(CDN_FETCHES_PER_S + 3)))
        return sorted(times)

    times = asyncio.run(burst())
    assert len(times) == CDN_FETCHES_PER_S + 3
    assert times[CDN_FETCHES_PER_S - 1] < 0.5  # the first ten at once
    assert times[CDN_FETCHES_PER_S] >= 0.95  # the rest after the window moved on


def test_no_private_attributes_of_dependencies_are_used() -> None:
    import ast
    from pathlib import Path

    source = (Path(__file__).resolve().parents[2] / "bot" / "limits.py").read_text(encoding="utf-8")
    private = [node.attr for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
               and not (isinstance(node.value, ast.Name) and node.value.id == "self")]
    assert private == []
