"""Clients of the AWS APIs the agent talks to (the command service, S3, EC2 metadata).

One builder of botocore clients with one set of client settings (proxy, timeouts,
retries, User-Agent), one translation of their failures into one-line errors, the
credentials the agent signs with, and the service models we ship.
"""
