"""The ``codedeploy-agent`` program: the daemon and its management verbs."""
