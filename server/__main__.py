"""``python -m server``: the same as the ``codedeploy-server`` console script."""

from __future__ import annotations

from server.entry import main

main()
