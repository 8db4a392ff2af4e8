"""Installed-package stand-ins: a dist-info folder (what importlib.metadata reads) and, when asked, an empty
import package (what find_spec finds), in a folder a test puts on sys.path. Nothing in them is imported by
the code under test, which reads metadata only."""

from __future__ import annotations

from pathlib import Path


def fake_dist(site: Path, name: str, version: str, *, module: str | None = None) -> None:
    """``name`` ``version`` as installed under ``site``; ``module``: also an empty importable package."""
    metadata = site / f"{name.replace('-', '_')}-{version}.dist-info" / "METADATA"
    metadata.parent.mkdir(parents=True)
    metadata.write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if module:
        (site / module).mkdir()
        (site / module / "__init__.py").write_text("")
