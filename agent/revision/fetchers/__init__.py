"""Bringing a revision from its source onto this host: a local file or folder, S3, GitHub.

Each fetcher leaves an archive as ``<deployment>/bundle.tar`` (a local folder is copied
straight into ``deployment-archive/``). The network fetchers import their libraries
(botocore, through :mod:`agent.aws_clients`) themselves, and are imported only when a
revision needs them. What DownloadBundle needs of a fetcher is the ``RevisionFetcher`` Protocol (``revision_fetcher.py``).
"""
