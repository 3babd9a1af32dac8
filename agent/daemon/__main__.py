"""``python -m agent.daemon`` runs ``codedeploy-agent``."""

from __future__ import annotations

from agent.daemon.entry import main

main()
