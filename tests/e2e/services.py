"""Private PostgreSQL and Redis servers that a fault test may stop and start at will.

The shared servers of the machine (PostgreSQL on 5432, Redis on 6379) are never stopped: an
outage test runs its own server, on a free port, with its files in a temporary directory.

- :class:`PrivatePostgres` is a cluster made with the Debian binaries (``initdb`` and
  ``postgres`` from ``/usr/lib/postgresql/<version>/bin``, or ``BEATX_TEST_PG_BIN``).
  PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
  ``postgres`` OS user, in a directory it owns.  Trust authentication, ``fsync=off``.
- :class:`PrivateRedis` is ``redis-server`` without snapshots, optionally with an
  append-only file so that a killed server comes back with the messages it had.

Both start in their own process group, so a stop or cleanup reaches every process they
forked.  Every wait is bounded; :meth:`cleanup` kills what is left and removes the files.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: ``pg_ctl``'s shutdown modes and the signal each sends to the postmaster.
PG_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT,
                   "immediate": signal.SIGQUIT}


class MissingServer(RuntimeError):
    """The binaries a private server needs are not installed (or cannot be used)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _version_key(path: Path) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in path.parent.name.split("."))
    except ValueError:
        return (0,)


def postgres_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``postgres`` (newest Debian version first)."""
    env = os.environ.get("BEATX_TEST_PG_BIN")
    candidates = [Path(env)] if env else sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    where = env or "/usr/lib/postgresql/*/bin"
    raise MissingServer(f"no PostgreSQL server binaries (initdb, postgres) in {where}; "
                        "install the Debian package `postgresql` or set BEATX_TEST_PG_BIN")


def redis_server_binary() -> str:
    """Path of ``redis-server`` (``BEATX_TEST_REDIS_SERVER`` overrides)."""
    binary = os.environ.get("BEATX_TEST_REDIS_SERVER") or shutil.which("redis-server")
    if not binary or not os.access(binary, os.X_OK):
        raise MissingServer("redis-server is not installed (Debian package `redis-server`), "
                            "or set BEATX_TEST_REDIS_SERVER")
    return binary


class _Server:
    """A server process in its own process group, with a log file."""

    name = "server"

    def __init__(self, root: Path, port: int | None) -> None:
        self.root = root
        self.port = port or free_port()
        self.log = root / f"{self.name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def _spawn(self, argv: list[str], **kwargs: Any) -> None:
        if self.running():
            raise RuntimeError(f"{self.name} on port {self.port} is running already")
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=self.root,
                                          start_new_session=True, **kwargs)

    def _wait_ready(self, ready: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}) while "
                                   f"starting on port {self.port}:\n{_tail(self.log)}")
            try:
                ready()
                return
            except Exception as exc:  # not accepting connections yet
                last = exc
            time.sleep(0.1)
        self._signal_group(signal.SIGKILL)
        raise RuntimeError(f"{self.name} did not accept connections on port {self.port} "
                           f"within {timeout:.0f}s ({last}):\n{_tail(self.log)}")

    def _signal_group(self, sig: int) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def _stop(self, sig: int, timeout: float, group: bool = False) -> None:
        """Send ``sig`` to the server (or its whole process group) and wait for it to exit;
        SIGKILL to the group if it lingers.  The group is only signalled while its leader
        is not reaped yet, so the id cannot belong to anyone else."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            if group:
                self._signal_group(sig)
            else:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(10)
        deadline = time.monotonic() + timeout
        while port_open(self.port, 0.2) and time.monotonic() < deadline:
            time.sleep(0.05)

    def cleanup(self) -> None:
        """Kill whatever is left and delete the server's files."""
        self._stop(signal.SIGKILL, 10, group=True)
        shutil.rmtree(self.root, ignore_errors=True)


class PrivatePostgres(_Server):
    """A PostgreSQL cluster of this test session's own (see the module docstring).

    ``initdb`` runs once, in :meth:`create`; :meth:`start` and :meth:`stop` may follow each
    other any number of times on the same port and data directory.
    """

    name = "postgres"
    user = "postgres"

    def __init__(self, root: Path, port: int | None = None) -> None:
        super().__init__(root, port)
        self.bin_dir = postgres_bin_dir()
        self.data = root / "data"
        self.sockets = root / "sockets"
        self._as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(self.user)
            except KeyError:
                raise MissingServer(f"tests run as root and PostgreSQL refuses root, but there "
                                    f"is no {self.user!r} OS user to run it as") from None
            self._as_user = {"user": account.pw_uid, "group": account.pw_gid,
                             "extra_groups": []}
            self._owner = (account.pw_uid, account.pw_gid)
        else:
            self._owner = (os.getuid(), os.getgid())

    @classmethod
    def create(cls, port: int | None = None, timeout: float = 60.0) -> PrivatePostgres:
        """``initdb`` a new cluster in a new temporary directory (not started)."""
        # Not under pytest's tmp dir: that is private to root, and the server runs as
        # ``postgres``.
        root = Path(tempfile.mkdtemp(prefix="beatx-pg-"))
        try:
            server = cls(root, port)
            server.sockets.mkdir()
            for path in (root, server.sockets):
                os.chown(path, *server._owner)
            result = subprocess.run(
                [str(server.bin_dir / "initdb"), "-D", str(server.data), "-U", "postgres",
                 "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=root, timeout=timeout, check=False, **server._as_user)
            if result.returncode != 0:
                raise RuntimeError(f"initdb failed ({result.returncode}):\n"
                                   f"{result.stdout.decode(errors='replace')}")
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return server

    def start(self, timeout: float = 30.0) -> None:
        """Start the server; return once it accepts connections (at most ``timeout`` s)."""
        self._spawn([
            str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-k", str(self.sockets), "-c", "listen_addresses=127.0.0.1",
            # fsync=off costs data only when the machine crashes, never when the server is
            # killed (the files are in the OS cache).  synchronous_commit stays on: without
            # it an immediate stop loses commits the client was told were done.
            "-c", "fsync=off", "-c", "full_page_writes=off",
            "-c", "max_connections=200", "-c", "log_min_messages=warning",
        ], **self._as_user)
        self._wait_ready(self._ping, timeout)

    def _ping(self) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                             dbname="postgres", connect_timeout=2) as conn:
            conn.execute("SELECT 1")

    def stop(self, mode: str = "immediate", timeout: float = 30.0) -> None:
        """Shut the server down the way ``pg_ctl stop -m <mode>`` would.

        ``immediate`` (the default) is an outage: every backend quits at once, no checkpoint,
        open connections break; the next start runs crash recovery.
        """
        if mode not in PG_STOP_SIGNALS:
            raise ValueError(f"mode {mode!r} is not one of {sorted(PG_STOP_SIGNALS)}")
        self._stop(PG_STOP_SIGNALS[mode], timeout)

    def restart(self, mode: str = "immediate", timeout: float = 30.0) -> None:
        self.stop(mode, timeout)
        self.start(timeout)

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL of a database on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def _admin(self) -> Any:
        import sqlalchemy as sa
        from sqlalchemy.pool import NullPool

        return sa.create_engine(self.url(), isolation_level="AUTOCOMMIT", poolclass=NullPool)

    def create_database(self, name: str) -> str:
        """``CREATE DATABASE name``; returns its URL."""
        import sqlalchemy as sa

        engine = self._admin()
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Disconnect everyone from ``name`` and drop it."""
        import sqlalchemy as sa

        engine = self._admin()
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = :n AND pid <> pg_backend_pid()"),
                             {"n": name})
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        finally:
            engine.dispose()

    @contextlib.contextmanager
    def fresh_database(self) -> Iterator[str]:
        """A new database for one test; dropped afterwards (the server is started first
        if a test left it stopped)."""
        name = f"beatx_p_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        if not self.running():
            self.start()
        url = self.create_database(name)
        try:
            yield url
        finally:
            if not self.running():
                self.start()
            self.drop_database(name)


class PrivateRedis(_Server):
    """A ``redis-server`` of one test's own, on a port that stays the same across restarts.

    ``persist=True`` adds an append-only file: what the server acknowledged is written to
    the file before the reply, so a killed server comes back with every message it had
    queued (an outage of the broker, not a loss of its data).
    """

    name = "redis"

    def __init__(self, root: Path, port: int | None = None, persist: bool = False) -> None:
        super().__init__(root, port)
        self.binary = redis_server_binary()
        self.persist = persist

    def start(self, timeout: float = 15.0) -> None:
        """Start on :attr:`port`; return once it answers PING (at most ``timeout`` s)."""
        self._spawn([
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "yes" if self.persist else "no",
            "--appendfsync", "always", "--dir", str(self.root), "--daemonize", "no",
        ])
        self._wait_ready(self._ping, timeout)

    def _ping(self) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1,
                             socket_timeout=1)
        try:
            if not client.ping():
                raise ConnectionError("no PONG")
            # While loading its append-only file the server answers PING but refuses work.
            client.llen("beatx-ping")
        finally:
            client.close()

    def stop(self, sig: int = signal.SIGKILL, timeout: float = 15.0) -> None:
        """Kill the server (an outage); :meth:`start` brings it back on the same port."""
        self._stop(sig, timeout)

    def restart(self, timeout: float = 15.0) -> None:
        self.stop()
        self.start(timeout)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @classmethod
    def create(cls, root: Path | None = None, persist: bool = False) -> PrivateRedis:
        """A server (not started) with its files in ``root`` or a new temporary directory."""
        root = root or Path(tempfile.mkdtemp(prefix="beatx-redis-"))
        root.mkdir(parents=True, exist_ok=True)
        return cls(root, persist=persist)
