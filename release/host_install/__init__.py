"""The installer of the CodeDeploy host agent (Python work-alike), standard library only.

It runs on the host's own Python (3.9 or newer) before the agent exists, so it imports
nothing outside the standard library. ``cli`` reads the options; ``bundle`` opens and checks
a release bundle; ``python_env`` builds the agent's virtual environment from the bundle's
wheels; ``service`` talks to systemd (or falls back to the agent's own ``start``);
``aws_agent`` finds and retires the AWS agent; ``actions`` is install, upgrade and
uninstall; ``undo`` puts the host back as it was when a step fails.
"""
