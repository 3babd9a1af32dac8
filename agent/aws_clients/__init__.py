"""Clients of the AWS APIs the daemon talks to, built on boto3 (and service models we ship)."""
