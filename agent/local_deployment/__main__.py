"""``python -m agent.local_deployment`` runs ``codedeploy-local``."""

from __future__ import annotations

from agent.local_deployment.entry import main

main()
