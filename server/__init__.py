"""The self-hosted CodeDeploy service (``codedeploy-server``): one process that speaks the
CodeDeploy API the AWS CLI uses and the command service API the agents poll, and carries
out deployments across the fleet.

It lives beside the agent in the same distribution and reuses the agent's pieces (the
command-service models, the signed-envelope format, the logging); the agent never imports
it. docs/server.md is its reference.
"""
