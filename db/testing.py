"""Throw-away databases for tests: a public helper for voltloop's tests and yours.

:class:`PostgresServer` runs a private PostgreSQL server from the installed
binaries (``initdb`` + ``pg_ctl``) on 127.0.0.1 at a free port, with trust
authentication, its data and socket in a temporary directory, and removes it all
on :meth:`~PostgresServer.stop`. As root (where ``initdb`` refuses to run) the
server runs as the ``postgres`` user. :func:`create_database` makes a fresh
database on any server you may create databases on; a migrated *template*
database makes each new one a fast file copy.

    with PostgresServer() as server:
        url = create_database(server.admin_url, "my_test")
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SERVER_USER = "voltloop"


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL binaries are missing or the server did not start."""


def find_postgres_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None if not installed.

    Looks at ``$VOLTLOOP_PG_BINDIR``, then ``PATH``, then Debian's
    ``/usr/lib/postgresql/<major>/bin`` (newest major first).
    """
    configured = os.environ.get("VOLTLOOP_PG_BINDIR")
    candidates: list[Path] = [Path(configured)] if configured else []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(re.sub(r"\D", "", Path(p).parent.name) or 0),
        reverse=True,
    )
    candidates.extend(Path(p) for p in debian)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A private, disposable PostgreSQL server (see the module docstring).

    Tuned for tests, not durability: ``fsync=off``, ``synchronous_commit=off``.
    Every subprocess has a timeout; ``start`` waits at most ``start_timeout_s``.
    """

    def __init__(self, bindir: Path | None = None, *, start_timeout_s: int = 60) -> None:
        found = bindir or find_postgres_bindir()
        if found is None:
            raise PostgresUnavailableError(
                "PostgreSQL binaries (initdb, pg_ctl) not found: install PostgreSQL "
                "(Debian: apt-get install postgresql) or set VOLTLOOP_PG_BINDIR"
            )
        self.bindir = found
        self.start_timeout_s = start_timeout_s
        self.port: int | None = None
        self.workdir: Path | None = None
        self._run_as: list[str] = []

    @property
    def admin_url(self) -> str:
        """URL of the server's ``postgres`` database as its superuser."""
        if self.port is None:
            raise PostgresUnavailableError("the server is not running")
        return f"postgresql+psycopg://{_SERVER_USER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresServer:
        self.workdir = Path(tempfile.mkdtemp(prefix="voltloop-pg-"))
        data = self.workdir / "data"
        log = self.workdir / "server.log"
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                self._cleanup()
                raise PostgresUnavailableError(
                    "running as root needs a `postgres` user to run the server as"
                ) from None
            os.chown(self.workdir, owner.pw_uid, owner.pw_gid)
            runuser = shutil.which("runuser")
            self._run_as = (
                [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-c"]
            )
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                _SERVER_USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            timeout=120,
        )
        for _attempt in range(3):
            self.port = free_port()
            options = (
                f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=100"
            )
            result = self._run(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(log),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    str(self.start_timeout_s),
                    "start",
                ],
                timeout=self.start_timeout_s + 30,
                check=False,
            )
            if result.returncode == 0:
                return self
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        self._cleanup()
        raise PostgresUnavailableError(f"PostgreSQL did not start: {result.stderr}\n{tail}")

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        if self.workdir is None:
            return
        data = self.workdir / "data"
        if (data / "postmaster.pid").exists():
            self._run(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "30",
                    "stop",
                ],
                timeout=60,
                check=False,
            )
        self._cleanup()

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _cleanup(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None
        self.port = None

    def _run(
        self, argv: list[str], *, timeout: float, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        if self._run_as and self._run_as[-1] == "-c":  # su postgres -c "cmd"
            command = [*self._run_as, " ".join(_shell_quote(a) for a in argv)]
        else:
            command = [*self._run_as, *argv]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=self.workdir
        )
        if check and result.returncode != 0:
            raise PostgresUnavailableError(
                f"{Path(argv[0]).name} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result


def _shell_quote(arg: str) -> str:
    return shlex.quote(arg)


def _admin_engine(admin_url: str | URL) -> Engine:
    return create_engine(
        admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 10}
    )


def create_database(admin_url: str | URL, name: str, *, template: str | None = None) -> str:
    """Create database ``name`` (dropping one of that name first) and return its URL.

    ``template`` copies an existing database (e.g. one already migrated), which is
    much faster than migrating again. ``name`` must be a plain lower-case identifier.
    """
    for identifier in (name, template):
        if identifier is not None and not _IDENTIFIER.match(identifier):
            raise ValueError(f"database name {identifier!r} is not a plain identifier")
    admin = make_url(admin_url) if isinstance(admin_url, str) else admin_url
    engine = create_engine(
        admin, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 10}
    )
    try:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            clause = f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""
            connection.execute(text(f'CREATE DATABASE "{name}"{clause}'))
    finally:
        engine.dispose()
    return admin.set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str | URL, name: str) -> None:
    """Drop database ``name`` if it exists (closing its connections)."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"database name {name!r} is not a plain identifier")
    engine = create_engine(
        admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 10}
    )
    try:
        with engine.connect() as connection, contextlib.suppress(Exception):
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()
