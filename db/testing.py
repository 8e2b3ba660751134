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

import atexit
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

import numpy as np
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SERVER_USER = "voltloop"


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL binaries are missing or the server did not start."""


def find_postgres_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None if not installed.

    ``$VOLTLOOP_PG_BINDIR`` if set (and nothing else); otherwise ``PATH``, then
    Debian's ``/usr/lib/postgresql/<major>/bin`` (newest major first).
    """
    configured = os.environ.get("VOLTLOOP_PG_BINDIR")
    if configured:  # an explicit choice is the only candidate
        directory = Path(configured)
        ok = (directory / "initdb").is_file() and (directory / "pg_ctl").is_file()
        return directory if ok else None
    candidates: list[Path] = []
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
                atexit.register(self.stop)  # also on an interpreter exit that skips teardown
                return self
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        self._cleanup()
        raise PostgresUnavailableError(f"PostgreSQL did not start: {result.stderr}\n{tail}")

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        atexit.unregister(self.stop)
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


def synthetic_cycle_series(
    cycle_index: int,
    *,
    n_samples: int = 1000,
    capacity_Ah: float = 1.1,
    t_start_s: float = 0.0,
    rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """A plausible LFP/graphite cycle as a raw series (arrays of shape ``(n_samples,)``).

    4C constant-current charge to 3.6 V, constant voltage until C/20, rest, 4C
    discharge to 2.0 V, rest; capacity fades and resistance grows with
    ``cycle_index``; voltage, current and temperature carry sensor noise. For
    tests and benchmarks that need realistic (not all-zero) data: it is no
    substitute for the simulated lab's physics.
    """
    rng = rng if rng is not None else np.random.default_rng(cycle_index)
    capacity = capacity_Ah * (1.0 - 2e-4 * cycle_index)
    r_ohm = 0.020 * (1.0 + 5e-4 * cycle_index)
    i_fast = 4.0 * capacity_Ah
    n_cc, n_cv, n_rest1, n_dis = (int(f * n_samples) for f in (0.30, 0.20, 0.10, 0.30))
    n_rest2 = n_samples - n_cc - n_cv - n_rest1 - n_dis
    t_cc = 0.8 * capacity / i_fast * 3600.0
    t_dis = 0.97 * capacity / i_fast * 3600.0
    durations = [t_cc, 900.0, 600.0, t_dis, 600.0]
    counts = [n_cc, n_cv, n_rest1, n_dis, n_rest2]
    pieces_t, pieces_i, pieces_step = [], [], []
    start = 0.0
    for step, (duration, count) in enumerate(zip(durations, counts, strict=True)):
        local = np.linspace(0.0, duration, count, endpoint=False)
        pieces_t.append(start + local)
        if step == 0:
            current = np.full(count, i_fast)
        elif step == 1:
            current = i_fast * np.exp(-local / (duration / 3.0)) * 0.5 + capacity_Ah / 20
        elif step == 3:
            current = np.full(count, -i_fast)
        else:
            current = np.zeros(count)
        pieces_i.append(current)
        pieces_step.append(np.full(count, step, dtype=np.int32))
        start += duration
    t = np.concatenate(pieces_t)
    current = np.concatenate(pieces_i)
    dt = np.diff(t, append=t[-1] + (t[-1] - t[-2] if t.size > 1 else 1.0))
    charge = np.cumsum(np.clip(current, 0, None) * dt) / 3600.0
    discharge = np.cumsum(np.clip(-current, 0, None) * dt) / 3600.0
    soc = np.clip(0.1 + (charge - discharge) / capacity, 0.0, 1.0)
    # LFP-like: a flat plateau with steep ends
    ocv = 3.25 + 0.08 * soc - 0.6 * np.exp(-soc / 0.04) + 0.25 * np.exp((soc - 1.0) / 0.03)
    voltage = np.clip(ocv + current * r_ohm, 2.0, 3.6)
    step_index = np.concatenate(pieces_step)
    voltage[step_index == 1] = 3.6  # constant-voltage hold
    window = max(1, min(60, t.size))  # thermal lag of ~60 samples
    heating = np.convolve(current**2 * r_ohm, np.ones(window) / window, mode="same")
    temperature = 30.0 + 15.0 * heating
    return {
        "t_s": t_start_s + t,
        "voltage_V": (voltage + rng.normal(0.0, 5e-4, t.size)).astype(np.float32),
        "current_A": (current + rng.normal(0.0, 1e-3, t.size)).astype(np.float32),
        "temperature_C": (temperature + rng.normal(0.0, 0.05, t.size)).astype(np.float32),
        "charge_Ah": charge.astype(np.float32),
        "discharge_Ah": discharge.astype(np.float32),
        "step": step_index,
    }
