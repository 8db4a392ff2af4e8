"""The thresholds table: grading semantics, provenance, and coverage of every check."""

from __future__ import annotations

import pytest

from generation.quality.gate import Assessment
from generation.quality.report import CHECK_ORDER, Tier
from generation.quality.thresholds import THRESHOLDS, Threshold, grade

HIGHER_WORSE = Threshold(warn=2.0, fail=4.0, higher_is_worse=True, unit="ratio", source="test")
LOWER_WORSE = Threshold(warn=64.0, fail=32.0, higher_is_worse=False, unit="px", source="test")


@pytest.mark.parametrize(
    ("value", "tier"),
    [(0.0, Tier.PASS), (2.0, Tier.PASS), (2.01, Tier.WARN), (4.0, Tier.WARN), (4.01, Tier.FAIL),
     (1e9, Tier.FAIL)],
)
def test_higher_is_worse_limits_are_exclusive(value: float, tier: Tier) -> None:
    assert HIGHER_WORSE.grade(value) == tier


@pytest.mark.parametrize(
    ("value", "tier"),
    [(100.0, Tier.PASS), (64.0, Tier.PASS), (63.9, Tier.WARN), (32.0, Tier.WARN), (31.9, Tier.FAIL),
     (0.0, Tier.FAIL)],
)
def test_lower_is_worse_limits_are_exclusive(value: float, tier: Tier) -> None:
    assert LOWER_WORSE.grade(value) == tier


def test_missing_limits_never_trigger() -> None:
    warn_only = Threshold(warn=10.0, fail=None, higher_is_worse=True, unit="", source="")
    assert warn_only.grade(5.0) == Tier.PASS
    assert warn_only.grade(1e12) == Tier.WARN
    fail_only = Threshold(warn=None, fail=0.9, higher_is_worse=False, unit="", source="")
    assert fail_only.grade(0.95) == Tier.PASS
    assert fail_only.grade(0.5) == Tier.FAIL
    neither = Threshold(warn=None, fail=None, higher_is_worse=True, unit="", source="")
    assert {neither.grade(v) for v in (-1e9, 0.0, 1e9)} == {Tier.PASS}


def test_grade_looks_up_the_table() -> None:
    assert grade("resolution", 20.0) == Tier.FAIL
    assert grade("resolution", 48.0) == Tier.WARN
    assert grade("resolution", 100.0) == Tier.PASS
    assert grade("over_exposure", 0.5) == Tier.FAIL
    assert grade("over_exposure", 0.0) == Tier.PASS
    with pytest.raises(KeyError):
        grade("no_such_threshold", 1.0)


@pytest.mark.parametrize("name", sorted(THRESHOLDS))
def test_every_threshold_is_sourced_and_consistent(name: str) -> None:
    t = THRESHOLDS[name]
    assert t.source.strip()
    assert t.unit.strip()
    assert t.warn is not None or t.fail is not None, "a threshold that can never trigger"
    if t.warn is not None and t.fail is not None:
        # The warning comes first on the way from good to bad (or the two coincide).
        assert (t.warn <= t.fail) if t.higher_is_worse else (t.warn >= t.fail)
        # Halfway between the limits warns; beyond the fail limit fails.
        if t.warn != t.fail:
            assert t.grade((t.warn + t.fail) / 2) == Tier.WARN
        beyond = t.fail + 1 if t.higher_is_worse else t.fail - 1
        assert t.grade(beyond) == Tier.FAIL


@pytest.mark.parametrize("name", ["obama.jpg", "camera.png"])
def test_every_check_appears_in_a_gate_report_in_order(assessments: dict[str, Assessment], name: str) -> None:
    report = assessments[name].report
    assert tuple(c.name for c in report.checks) == CHECK_ORDER
    for name_ in CHECK_ORDER:
        assert report.check(name_).name == name_
