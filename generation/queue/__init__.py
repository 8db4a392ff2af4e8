"""The job queue: embedded (asyncio + SQLite) by default, Redis Streams to scale out."""
