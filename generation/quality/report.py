"""The quality report: what each check measured, how it tiered, and what to tell the person."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Tier(enum.StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    FIXED = "fixed"  # the bot corrected it itself (rotation, crop to the largest face)
    SKIPPED = "skipped"  # could not be measured (no face, no 68-point landmarks, not a JPEG)


# Most important first: what a person must fix before anything else matters.
CHECK_ORDER = (
    "file",
    "face_found",
    "single_person",
    "resolution",
    "framing",
    "pose",
    "sunglasses",
    "occlusion",
    "blur",
    "detail",
    "smoothing",
    "over_exposure",
    "under_exposure",
    "backlight",
    "side_shadow",
    "colour_cast",
    "eyes_closed",
    "compression",
)

MAX_MESSAGES = 3

# One cause, one piece of advice: a generic check stays silent when a more specific one that fired
# explains its symptom. A blown-out face also has little tonal detail left (which under_exposure
# reads as "too dark"); a backlit face has crushed shadows for a reason its own advice names; and the
# eye-slit comparison means nothing under any of them.
EXPLAINED_BY: dict[str, tuple[str, ...]] = {
    "under_exposure": ("over_exposure", "backlight"),  # one-sided darkness: check_under_exposure itself
    # A face too dark overall also has dark eye regions: then "take off your sunglasses" is the false one.
    "sunglasses": ("under_exposure",),
    # Lost fine detail has a more specific cause when the face is small, dark, washed out or compressed;
    # and a detail failure (which check_detail only reports beside a blur warning) names the likelier cause.
    "detail": ("resolution", "over_exposure", "under_exposure", "compression"),
    "blur": ("detail",),
    # Grain needs light and an uncompressed file to be seen at all.
    "smoothing": ("over_exposure", "under_exposure", "compression"),
    "eyes_closed": ("sunglasses", "detail", "smoothing", "over_exposure", "under_exposure", "backlight",
                    "side_shadow", "occlusion"),
}


@dataclass(frozen=True)
class CheckResult:
    name: str
    tier: Tier
    value: float | None  # the raw measurement, in the unit the thresholds table gives
    advice: str = ""  # what the person should do; empty when there is nothing to do
    detail: str = ""  # what was measured, for logs and --json

    def to_dict(self) -> dict[str, Any]:
        value = None if self.value is None else round(float(self.value), 4)
        return {"name": self.name, "tier": str(self.tier), "value": value, "advice": self.advice,
                "detail": self.detail}


def explain_away(results: list[CheckResult]) -> list[CheckResult]:
    """``results`` with every check that a more specific firing check explains turned silent (PASS, no
    advice; the detail says why), so a person never gets two contradicting pieces of advice. Checks are
    looked at as measured: a silenced check explains nothing else."""
    severity = {Tier.WARN: 1, Tier.FAIL: 2}
    fired = {r.name: severity[r.tier] for r in results if r.tier in severity}
    out = []
    for result in results:
        # A cause explains a symptom only when it is at least as sure (a warning never silences a failure).
        causes = [name for name in EXPLAINED_BY.get(result.name, ())
                  if fired.get(name, 0) >= severity.get(result.tier, 3)]
        if result.tier in (Tier.WARN, Tier.FAIL) and causes:
            result = CheckResult(result.name, Tier.PASS, result.value, "",
                                 f"{result.detail}; not advised: explained by {', '.join(causes)}")
        out.append(result)
    return out


@dataclass(frozen=True)
class CropBox:
    """A square crop in ORIGINAL image pixels, rotated by ``angle`` degrees about its centre."""

    centre: tuple[float, float]
    side: float
    angle: float  # the face's roll: the crop is rotated with the face so the eyes come out level
    padding: float  # fraction of the side that falls outside the image and will be filled

    def corners(self) -> list[tuple[float, float]]:
        import math

        half = self.side / 2.0
        theta = math.radians(self.angle)
        c, s = math.cos(theta), math.sin(theta)
        cx, cy = self.centre
        return [(cx + dx * c - dy * s, cy + dx * s + dy * c) for dx, dy in
                ((-half, -half), (half, -half), (half, half), (-half, half))]

    def to_dict(self) -> dict[str, Any]:
        return {"centre": [round(v, 1) for v in self.centre], "side": round(self.side, 1),
                "angle": round(self.angle, 2), "padding": round(self.padding, 3)}


@dataclass(frozen=True)
class QualityReport:
    verdict: Tier  # PASS, WARN or FAIL
    checks: tuple[CheckResult, ...]
    crop: CropBox | None = None
    face_index: int | None = None  # which detected face the report is about (largest)
    faces_found: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)  # what was corrected on loading
    backend: str = ""

    @property
    def messages(self) -> list[str]:
        """At most three pieces of advice, failures before warnings, most important first."""
        ranked = sorted(
            (c for c in self.checks if c.advice and c.tier in (Tier.FAIL, Tier.WARN)),
            key=lambda c: (c.tier != Tier.FAIL, CHECK_ORDER.index(c.name)),
        )
        seen: list[str] = []
        for check in ranked:
            if check.advice not in seen:
                seen.append(check.advice)
        return seen[:MAX_MESSAGES]

    def check(self, name: str) -> CheckResult:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": str(self.verdict),
            "messages": self.messages,
            "checks": [c.to_dict() for c in self.checks],
            "crop": None if self.crop is None else self.crop.to_dict(),
            "faces_found": self.faces_found,
            "notes": list(self.notes),
            "backend": self.backend,
        }


def overall_verdict(checks: tuple[CheckResult, ...] | list[CheckResult]) -> Tier:
    tiers = {c.tier for c in checks}
    if Tier.FAIL in tiers:
        return Tier.FAIL
    if Tier.WARN in tiers:
        return Tier.WARN
    return Tier.PASS
