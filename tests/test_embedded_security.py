"""Only its owner gets into the embedded PostgreSQL (SPEC §11 last bullet, §10; issue 13 item 6).

Real processes throughout: a real server, and ``psql`` run as a second local system user created
for the test (the attacker of the bug as filed: ``psql -h 127.0.0.1 -U postgres`` used to get a
superuser, and ``COPY … TO PROGRAM`` then ran programs as the server's user).
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from bqxdask.config import build_config
from bqxdask.db.embedded import EmbeddedPostgres, bin_dir
from bqxdask.db.pgauth import hba_admits_without_password, hba_text
from bqxdask.db.urls import DbTarget
from bqxdask.errors import ConfigError

#: every test here starts embedded servers of its own (not the pg_server fixture)
pytestmark = pytest.mark.db

#: pg_hba.conf exactly as bqxdask wrote it before this fix
OLD_HBA = (
    "# bqxdask embedded PostgreSQL: superuser trusted locally, every other role by password\n"
    "local   all   all                     trust\n"
    "host    all   postgres  127.0.0.1/32    trust\n"
    "host    all   all       127.0.0.1/32    scram-sha-256\n"
)
WHO = "SELECT current_user || ' ' || usesuper FROM pg_user WHERE usename = current_user"


@pytest.fixture(scope="module")
def intruder():
    """A throwaway local system user: somebody else with a shell on the machine."""
    if os.geteuid() != 0:
        pytest.skip(
            "needs root to create a second local user to attack from (CI runs as root); "
            "as a normal user there is no other account to try the server from"
        )
    name = f"bqxprobe{secrets.token_hex(3)}"
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True
    )
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run([shutil.which("userdel") or "/usr/sbin/userdel", name], capture_output=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = EmbeddedPostgres(tmp_path_factory.mktemp("sec") / "pgdata")
    s.start()
    yield s
    s.destroy()


def _psql() -> str:
    return "/usr/bin/psql" if os.access("/usr/bin/psql", os.X_OK) else str(bin_dir() / "psql")


def as_user(user: pwd.struct_passwd, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``psql`` under ``user``'s uid and gid only; no password prompt, no ~/.pgpass."""
    clean = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LC_ALL": "C", "PGCONNECT_TIMEOUT": "10", **env}
    return subprocess.run(
        list(args),
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        env=clean,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )


def psql_tcp(user, server: EmbeddedPostgres, **env: str) -> subprocess.CompletedProcess:
    return as_user(
        user,
        _psql(),
        "-X",
        "-w",
        "-At",
        "-h",
        "127.0.0.1",
        "-p",
        str(server.port),
        "-U",
        "postgres",
        "-d",
        "bqx",
        "-c",
        WHO,
        **env,
    )


def psql_socket(user, server: EmbeddedPostgres) -> subprocess.CompletedProcess:
    return as_user(
        user,
        _psql(),
        "-X",
        "-w",
        "-At",
        "-h",
        str(server.data_dir),
        "-p",
        str(server.port),
        "-U",
        "postgres",
        "-d",
        "bqx",
        "-c",
        WHO,
    )


def superuser_connect(server: EmbeddedPostgres, **kw):
    return psycopg2.connect(**DbTarget.parse(server.url).connect_kwargs(connect_timeout=10, **kw))


def make_it_old(server: EmbeddedPostgres) -> None:
    """Turn a running cluster into one initialised by older bqxdask: no password, trusting hba."""
    conn = superuser_connect(server, dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ALTER ROLE postgres PASSWORD NULL")
            (server.data_dir / "pg_hba.conf").write_text(OLD_HBA)  # keeps its owner (bqxpg under root)
            cur.execute("SELECT pg_reload_conf()")
    finally:
        conn.close()
    server.password_file.unlink()


def assert_refused_without_password(intruder, server: EmbeddedPostgres) -> None:
    tcp = psql_tcp(intruder, server)
    assert tcp.returncode != 0 and "no password supplied" in tcp.stderr, (tcp.stdout, tcp.stderr)
    sock = psql_socket(intruder, server)
    assert sock.returncode != 0 and "Permission denied" in sock.stderr, (sock.stdout, sock.stderr)


def test_another_local_user_gets_in_nowhere(server, intruder):
    # the socket's only gate is the data directory itself: every directory above it is enterable
    for parent in server.data_dir.parents:
        assert parent.stat().st_mode & stat.S_IXOTH, parent
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
    assert_refused_without_password(intruder, server)
    cat = as_user(intruder, "/bin/cat", str(server.password_file))
    assert cat.returncode != 0 and "Permission denied" in cat.stderr
    # the probe is real: the same user and command, given the password, do get in over TCP
    ok = psql_tcp(intruder, server, PGPASSWORD=server.password())
    assert ok.returncode == 0 and ok.stdout.strip() == "postgres true", ok.stderr


def test_password_file_is_the_owners_alone_and_every_method_asks_for_it(server):
    st = server.password_file.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    password = server.password()
    assert len(password) >= 32 and DbTarget.parse(server.url).password == password
    assert not hba_admits_without_password((server.data_dir / "pg_hba.conf").read_text())
    conn = superuser_connect(server)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT current_user")
        assert cur.fetchone() == ("postgres",)
    conn.close()
    target = DbTarget.parse(server.public_url)
    for where in ("127.0.0.1", str(server.data_dir)):  # TCP and the socket (the owner can enter its directory)
        with pytest.raises(psycopg2.OperationalError, match="no password supplied"):
            psycopg2.connect(**target.connect_kwargs(host=where, connect_timeout=10))
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(**target.connect_kwargs(host=where, password="wrong-" + password, connect_timeout=10))
        psycopg2.connect(**target.connect_kwargs(host=where, password=password, connect_timeout=10)).close()


def test_db_commands_never_print_the_embedded_password(server, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[database]\nembedded_dir = "{server.data_dir}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BQX_", "PG"))}
    out = {}
    for action in ("start", "status", "url"):
        proc = subprocess.run(
            [sys.executable, "-m", "bqxdask", "db", action, "--config", str(cfg)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert server.password() not in proc.stdout + proc.stderr
        out[action] = proc
    assert (
        out["url"].stdout.strip() == server.public_url == f"postgresql+psycopg2://postgres@127.0.0.1:{server.port}/bqx"
    )
    assert f"password: in {server.password_file}" in out["url"].stderr
    assert f"password in {server.password_file}" in out["status"].stdout


def test_trusting_cluster_of_older_bqxdask_is_moved_to_passwords_while_running(tmp_path, intruder, caplog):
    server = EmbeddedPostgres(tmp_path / "pgdata")
    server.start()
    try:
        make_it_old(server)
        hole = psql_tcp(intruder, server)  # the bug as filed: anybody is the superuser
        assert hole.returncode == 0 and hole.stdout.strip() == "postgres true", hole.stderr
        pid = server.status().pid
        with caplog.at_level(logging.WARNING, logger="bqxdask.db.embedded"):
            server.start()
        assert "moved from trust to password authentication" in caplog.text and str(server.password_file) in caplog.text
        assert server.password() not in caplog.text
        assert server.status().pid == pid  # reloaded, not restarted
        assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
        assert_refused_without_password(intruder, server)
        superuser_connect(server).close()
    finally:
        server.destroy()


def test_trusting_cluster_of_older_bqxdask_is_moved_to_passwords_when_stopped(tmp_path, intruder, caplog):
    server = EmbeddedPostgres(tmp_path / "pgdata")
    server.start()
    try:
        make_it_old(server)
        server.stop()
        with caplog.at_level(logging.WARNING, logger="bqxdask.db.embedded"):
            server.start()  # sets the password in single-user mode before the server listens
        assert "moved from trust to password authentication" in caplog.text
        assert hba_text(server.listen_addresses, server.password_file) == (server.data_dir / "pg_hba.conf").read_text()
        assert_refused_without_password(intruder, server)
        superuser_connect(server).close()
    finally:
        server.destroy()


def test_lost_password_file_gets_a_new_password_on_the_next_start(tmp_path):
    server = EmbeddedPostgres(tmp_path / "pgdata")
    server.start()
    try:
        old = server.password()
        server.stop()
        server.password_file.unlink()
        server.start()
        assert server.password() != old
        superuser_connect(server).close()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(**DbTarget.parse(server.public_url).connect_kwargs(password=old, connect_timeout=10))
    finally:
        server.destroy()


def test_listen_addresses_are_validated_and_widen_the_hba_only_on_purpose():
    assert build_config({}).database.embedded_listen_addresses == "127.0.0.1"
    assert build_config({}).cluster.dashboard_address == "127.0.0.1:8787"
    with pytest.raises(ConfigError, match='database.embedded_listen_addresses = "127.0.0.1\'; x"'):
        build_config({"database": {"embedded_listen_addresses": "127.0.0.1'; x"}})
    pw = Path("/x/pgdata.password")
    assert "all             scram" not in hba_text("127.0.0.1", pw)
    wide = hba_text("10.0.0.5,127.0.0.1", pw)
    assert "host    all   all   all             scram-sha-256" in wide and not hba_admits_without_password(wide)
    assert EmbeddedPostgres("/x/pgdata", listen_addresses=" 10.0.0.5 , 127.0.0.1").host == "10.0.0.5"
