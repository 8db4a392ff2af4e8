"""What each part of the bot uses of the bot that wires it: narrow protocols, so flows, delivery, the status
page and the buttons depend on these few members, not on CloseupBot (whose module imports them all).

CloseupBot satisfies every protocol here; a test can hand a part any object that does.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import discord

from bot.limits import CommandRate, EditBudget
from bot.photo_work import PhotoWork
from bot.store import Store
from generation.config import Config
from generation.queue.base import JobQueue


class JobHold(Protocol):
    """Delivery as the flows see it: a job's events wait while it is set up, and a refused job's lane goes."""

    def hold(self, job_id: str) -> AbstractAsyncContextManager[None]: ...
    def discard(self, job_id: str) -> None: ...


class Core(Protocol):
    """Config, storage, the queue and metrics: what every part reads."""

    config: Config
    store: Store
    queue: JobQueue  # LocalQueue or RedisQueue
    metrics: Any  # bot.metrics.Metrics (which imports the buttons' module, so not named here)


class FlowsHost(Core, Protocol):
    rate: CommandRate
    photos: PhotoWork
    delivery: JobHold

    @property
    def application_id(self) -> int | None: ...


class DeliveryHost(Core, Protocol):
    edits: EditBudget
    photos: PhotoWork

    def get_partial_messageable(self, id: int, **kwargs: Any) -> discord.PartialMessageable: ...
    async def create_dm(self, user: discord.abc.Snowflake) -> discord.DMChannel: ...


class StatusHost(Core, Protocol):
    """What /healthz and /metrics read."""

    @property
    def ws(self) -> Any: ...
    @property
    def latency(self) -> float: ...
    def is_ready(self) -> bool: ...
    def is_closed(self) -> bool: ...


class ComponentActions(Protocol):
    """What the persistent buttons call (bot.flows.Flows)."""

    draft_action: Callable[..., Any]
    result_action: Callable[..., Any]
    cancel_job: Callable[..., Any]
    cancel_job_as_admin: Callable[..., Any]
    forget_answer: Callable[..., Any]


class ButtonHost(Protocol):
    flows: ComponentActions
