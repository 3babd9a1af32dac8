"""Access keys: who may call the server, their secrets sealed at rest, the admin commands."""
