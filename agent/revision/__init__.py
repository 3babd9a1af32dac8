"""A revision on this host: what a bundle may hold, and unpacking it into ``deployment-archive/``.

The fetchers (:mod:`agent.revision.fetchers`) bring a revision from its source (this
host's disk, S3, GitHub); the modules here judge and unpack it. Nothing here knows about
commands or the command service: ``DownloadBundle`` (:mod:`agent.host_command.download_bundle`)
composes the two.
"""
