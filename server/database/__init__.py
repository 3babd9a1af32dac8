"""The server's state in a SQL database: SQLite by default, PostgreSQL by URL, one schema."""
