"""Alembic's environment and the schema migrations of the server's database."""
