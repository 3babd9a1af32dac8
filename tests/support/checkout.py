"""The checkout the tests run from: programs started as subprocesses run its sources
(``PYTHONPATH``), and tests read its files (the unit file, the sample revision)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
