"""Host commands: getting a revision onto this host (fetch, unpack, copy) and running commands."""
