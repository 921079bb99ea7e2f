"""A throwaway PostgreSQL server for the tests: initdb in a temporary folder, started on a free
loopback port, stopped (and deleted) at the end of the session.

It needs PostgreSQL's server binaries (``initdb``, ``pg_ctl``), found on PATH or in
/usr/lib/postgresql/*/bin. Without them the PostgreSQL tests are skipped with a line saying how
to install them — except under ``PIXBOT_REQUIRE_POSTGRES=1`` (CI), where they fail instead.
PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user (or
``nobody``) through ``setpriv``.
"""

from __future__ import annotations

import asyncio
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

INSTALL_HINT = (
    "PostgreSQL tests skipped: no initdb/pg_ctl found. Install PostgreSQL's server "
    "(Debian/Ubuntu: apt install postgresql; macOS: brew install postgresql@15) "
    "or put its bin folder on PATH"
)
REQUIRED = os.environ.get("PIXBOT_REQUIRE_POSTGRES") == "1"
USER = "pixbot"


def find_binaries() -> Path | None:
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "pg_ctl").exists() and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> tuple[list[str], int | None]:
    """The command prefix and uid the server runs as (not root)."""
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        prefix = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]
        return prefix, entry.pw_uid
    raise RuntimeError("running as root and no postgres or nobody user to run PostgreSQL as")


@dataclass
class PgServer:
    root: Path
    port: int
    bin_dir: Path
    prefix: list[str]
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    @classmethod
    def start(cls) -> PgServer:
        bin_dir = find_binaries()
        if bin_dir is None:
            raise FileNotFoundError(INSTALL_HINT)
        prefix, uid = _run_as()
        root = Path(tempfile.mkdtemp(prefix="pixbot-pg-"))
        if uid is not None:
            os.chown(root, uid, -1)
        data = root / "data"
        subprocess.run(
            [
                *prefix,
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                USER,
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        port = _free_port()
        # Durability is not what these tests are about: fsync off makes a run fast.
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        subprocess.run(
            [
                *prefix,
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=90,
        )
        return cls(root, port, bin_dir, prefix)

    def create_database(self) -> str:
        """A new, empty database; returns its URL."""
        name = f"test_{next(self._names)}"

        async def create() -> None:
            admin = await asyncpg.connect(self.admin_url)
            try:
                await admin.execute(f"CREATE DATABASE {name}")
            finally:
                await admin.close()

        # Its own loop on its own thread: a test's loop may be running on this one.
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, create()).result(60)
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [
                *self.prefix,
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.root / "data"),
                "-m",
                "immediate",
                "-w",
                "-t",
                "30",
                "stop",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)
