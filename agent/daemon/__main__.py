"""``python -m agent.daemon`` runs ``codedeploy-agent``."""

from __future__ import annotations

import sys

from agent.daemon.cli import main

sys.exit(main())
