"""Fixtures shared by the whole suite; puts testkit/ (the local Discord, the tiny models, the fake generator,
shared with the benchmarks) on the import path."""

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTKIT = Path(__file__).resolve().parents[1] / "testkit"
if str(TESTKIT) not in sys.path:
    sys.path.insert(0, str(TESTKIT))


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    """setup_logging() swaps the root logger's handlers; give the test runner its own back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
