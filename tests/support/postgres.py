"""A throw-away PostgreSQL 15 cluster for the self-hosted service's database tests.

:class:`PostgresCluster` runs ``initdb`` and ``postgres`` as the unprivileged ``nobody``
in a folder it owns, reachable on a unix socket only.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import List, Optional

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


def postgres_unavailable_reason() -> Optional[str]:
    for program in ("initdb", "postgres"):
        if not (POSTGRES_BIN / program).is_file():
            return f"PostgreSQL 15 is not installed ({POSTGRES_BIN / program} is missing)"
    if os.geteuid() != 0:
        return "starting PostgreSQL as the unprivileged user nobody needs root"
    return None


class PostgresCluster:
    """A PostgreSQL 15 cluster of its own, run by ``nobody``, reachable on a unix socket."""

    USER = "nobody"

    def __init__(self) -> None:
        import pwd

        entry = pwd.getpwnam(self.USER)
        self._uid, self._gid = entry.pw_uid, entry.pw_gid
        self.folder = Path(tempfile.mkdtemp(prefix="codedeploy-server-pg-", dir="/tmp"))
        os.chown(self.folder, self._uid, self._gid)
        self.data = self.folder / "data"
        self.socket_dir = self.folder
        self.process: Optional[subprocess.Popen[bytes]] = None

    def _as_owner(
        self, arguments: List[str], **options: object
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            arguments,
            user=self._uid,
            group=self._gid,
            extra_groups=[],
            cwd=self.folder,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            capture_output=True,
            check=True,
            timeout=120,
            **options,  # type: ignore[call-overload]
        )

    def start(self) -> PostgresCluster:
        self._as_owner(
            [
                str(POSTGRES_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ]
        )
        self.process = subprocess.Popen(
            [
                str(POSTGRES_BIN / "postgres"),
                "-D",
                str(self.data),
                "-k",
                str(self.socket_dir),
                "-c",
                "listen_addresses=",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ],
            user=self._uid,
            group=self._gid,
            extra_groups=[],
            cwd=self.folder,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "postgres.log").open("ab"),
        )
        deadline = time.monotonic() + 60
        while not (self.socket_dir / ".s.PGSQL.5432").exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((self.folder / "postgres.log").read_text(errors="replace"))
            time.sleep(0.05)
        return self

    def create_database(self, name: Optional[str] = None) -> str:
        """A new empty database; its SQLAlchemy URL."""
        import psycopg

        name = name or f"test_{uuid.uuid4().hex[:12]}"
        for _ in range(200):  # the socket exists a moment before connections are accepted
            try:
                with psycopg.connect(
                    host=str(self.socket_dir), user="postgres", dbname="postgres", autocommit=True
                ) as connection:
                    connection.execute(f'CREATE DATABASE "{name}"')
                break
            except psycopg.OperationalError:
                time.sleep(0.05)
        return f"postgresql+psycopg://postgres@/{name}?host={self.socket_dir}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
