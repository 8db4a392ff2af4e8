"""``async with`` for anything with ``start()`` and ``close()`` (the queues, the bot's store): one mixin, so
every service opens and closes the same way."""

from __future__ import annotations

from typing import Self


class StartClose:
    """Adds ``async with``: ``start()`` on entry, ``close()`` on exit (also after an error)."""

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
