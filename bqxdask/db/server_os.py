"""What the embedded PostgreSQL (:mod:`.embedded`) needs from the operating system.

A loopback port for it to listen on, and a way to tell from its log that another process bound
that port first. When we are root, a system user to run it as, and directories that user can
reach.
"""

from __future__ import annotations

import pwd
import shutil
import socket
import stat
import subprocess
from pathlib import Path

from ..errors import DatabaseError

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A loopback port nothing listens on now; another process may take it before the server does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def port_taken(port: int | None) -> bool:
    """Does something hold ``port`` on the loopback address?"""
    if port is None:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return True
    return False


def logged_port_in_use(log_file: Path, offset: int) -> bool:
    """Did the server's log say, after ``offset`` bytes, that its port was already in use?

    The server's messages are in English: :mod:`.embedded` runs it under ``LC_ALL=C``.
    """
    try:
        with log_file.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return False
    return "could not bind" in text and "Address already in use" in text


def ensure_system_user(name: str) -> None:
    """Create the system user ``name`` (no home, no shell) unless it exists."""
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    proc = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], capture_output=True, text=True
    )
    if proc.returncode != 0 and "already exists" not in proc.stderr:
        raise DatabaseError(
            f"cannot create system user {name} to run PostgreSQL as (we are root and PostgreSQL refuses root): "
            f"{proc.stderr.strip()}; fix: run bqxdask as a normal user"
        )


def make_traversable(path: Path) -> None:
    """Let the unprivileged server user reach ``path`` (adds o+x on each ancestor)."""
    for p in [path, *path.parents]:
        try:
            mode = p.stat().st_mode
        except FileNotFoundError:
            continue
        if not mode & stat.S_IXOTH:
            p.chmod(mode | stat.S_IXOTH)
