"""``codedeploy-local``: a deployment on this host with no command service."""
