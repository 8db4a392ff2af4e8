"""The records the store hands out: one frozen dataclass per kind of row, plus the values they may hold.

They carry no database code, so the bot's flows and cogs can build and pass them around freely.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from generation.prompts import NSFW_POLICIES  # the one list: the linter applies the policy

FINISHED_STATES = ("done", "failed", "cancelled", "deleted", "poisoned")


@dataclass(frozen=True)
class StoredReference:
    ref_id: int
    user_id: str
    sha256: str
    verdict: str
    advice: tuple[str, ...]
    created_at: float
    last_used_at: float


@dataclass(frozen=True)
class Draft:
    """A checked photo waiting for the person to press Generate."""

    draft_id: str
    user_id: str
    guild_id: str
    channel_id: str
    photo_sha: str
    crop_sha: str | None
    verdict: str
    prompt: str
    style: str
    framing: str | None
    count: int
    seed: int | None
    identity_strength: float | None
    use_saved_references: bool
    created_at: float


@dataclass(frozen=True)
class JobRecord:
    """The Discord side of a queued job (the queue keeps its own journal).

    ``spec_json`` is the JobSpec without its photos (``references=[]``); ``reference_shas`` names the
    photos it used so a re-roll can rebuild it. The interaction token is a secret: it is kept out of repr.
    """

    job_id: str
    user_id: str
    guild_id: str
    channel_id: str
    spec_json: str
    reference_shas: tuple[str, ...]
    application_id: str
    interaction_token: str = field(repr=False)
    token_expires_at: float
    progress_message_id: str | None
    state: str
    created_at: float
    finished_at: float | None
    attachment_limit: int = 0  # the interaction's upload limit in bytes; 0 = Discord's default
    started_at: float | None = None  # when a worker first started it (for the server's wait statistics)


@dataclass(frozen=True)
class StoredResult:
    job_id: str
    index: int
    sha256: str
    seed: int
    likeness: float | None
    same_person: bool | None
    face_found: bool
    refined: bool


@dataclass(frozen=True)
class GuildSettings:
    """Per-server overrides; None (or no channels) means the config's defaults apply."""

    guild_id: str
    allowed_channels: tuple[str, ...] = ()  # empty = every channel
    per_user: int | None = None
    per_guild: int | None = None
    nsfw_policy: str | None = None  # block | warn | allow
    daily_quota: int | None = None  # portraits one person may ask for here per day; None = no quota

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_channels", tuple(str(c) for c in self.allowed_channels))
        if self.nsfw_policy is not None and self.nsfw_policy not in NSFW_POLICIES:
            raise ValueError(f"nsfw_policy must be one of {', '.join(NSFW_POLICIES)} (or unset), "
                             f"not {self.nsfw_policy!r}")
        for name in ("per_user", "per_guild"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} cannot be negative (got {value})")


@dataclass(frozen=True)
class ForgetReport:
    rows: int
    files: int


@dataclass(frozen=True)
class DayUsage:
    day: str  # YYYY-MM-DD, UTC
    asked: int
    done: int
    failed: int
    cancelled: int
    average_wait_s: float | None  # asking to a worker starting it; None when nothing started that day
