"""Password authentication for the embedded PostgreSQL (SPEC §11): only its owner gets in.

Pure helpers used by :mod:`bqxdask.db.embedded`: the ``pg_hba.conf`` text (scram-sha-256 for
every connection method, no ``trust``), the detection of a trusting file written by older
bqxdask, the password file (0600, written atomically) and the SCRAM verifier sent to the server
in place of the password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARDS = frozenset({"*", "0.0.0.0", "::"})
#: pg_hba methods that admit a client without its password
_PASSWORDLESS = frozenset({"trust", "peer", "ident"})


def new_password() -> str:
    """A fresh superuser password: 256 random bits, URL-safe characters only."""
    return secrets.token_urlsafe(32)


def loopback_only(listen_addresses: str) -> bool:
    return all(a.strip() in LOOPBACK_NAMES for a in listen_addresses.split(","))


def hba_text(listen_addresses: str, password_file: Path) -> str:
    """``pg_hba.conf``: every role by password on the socket and over TCP; beyond loopback only if configured."""
    lines = [
        "# written by bqxdask (db/pgauth.py): every role gives its password, nothing is trusted",
        f"# (SPEC §11); the superuser's is in {password_file}",
        "local   all   all                   scram-sha-256",
        "host    all   all   127.0.0.1/32    scram-sha-256",
        "host    all   all   ::1/128         scram-sha-256",
    ]
    if not loopback_only(listen_addresses):
        lines.append(f"host    all   all   all             scram-sha-256   # listen_addresses = {listen_addresses}")
    return "\n".join(lines) + "\n"


def hba_admits_without_password(text: str) -> bool:
    """Whether a ``pg_hba.conf`` lets anyone in without a password (as older bqxdask wrote it)."""
    rows = [line.split("#", 1)[0].split() for line in text.splitlines()]
    return any(row and row[-1] in _PASSWORDLESS for row in rows)


def write_private_file(path: Path, text: str) -> None:
    """Write ``path`` atomically with mode 0600, owned by the current user; never readable by others."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def scram_verifier(password: str, *, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802, RFC 7677).

    ``ALTER ROLE … PASSWORD '<verifier>'`` stores it as is, so the server never sees the
    password in a statement (nor in its log, should the statement fail). ``password`` must be
    ASCII (SASLprep leaves it unchanged), which :func:`new_password` guarantees.
    """
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
