"""Puts the shared test helpers on the path: the emulator and fake generator (testkit/), the bot harness
(tests/bot) and this folder's kit. The hostile image corpus is loaded by file path where it is used."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
for folder in (TESTS / "bot", TESTS.parent / "testkit", HERE):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
