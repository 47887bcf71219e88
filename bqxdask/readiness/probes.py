"""Ask every worker of an existing scheduler whether it can do the run's I/O (SPEC §8, §11).

On a LocalCluster the workers share the client's host, network and disks. On an existing
scheduler they may not, and two mistakes then only show an hour into a run:

- a database URL that works only on the client's host (a Unix socket, ``localhost``,
  ``127.0.0.1``): on another host it fails, or worse reaches another PostgreSQL;
- a local ``output.parquet_dir``: each worker writes its units to its own disk, scattered.

:func:`probe_workers` runs a tiny probe on every worker (``client.run``: outside the task
queue, so a busy cluster answers at once) that connects with the run's URL and asks the
server who it is, and writes, reads back and removes a file in the Parquet location — the one
write probe of :mod:`bqxdask.outputs.locations`, which judges a directory that does not exist
yet at its nearest existing parent. The client first writes its own probe file there, keeps it
while the workers look for it, and asks its own server the same question, so the verdicts rest
on what the workers see, not on guesses from host names: a worker that reaches a different
server, or does not see the client's marker, gets a ❌ naming it and the fix. Host names
(``socket.gethostname``) only explain the failure. :func:`require_workers_ready` is the
one-line-error form the pipeline calls before ``features`` starts.

Cost: one connection and three small file operations per worker and one round trip, about
0.1 s on two local workers.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import replace
from typing import Any

from ..db.urls import DbTarget, scrub
from ..errors import BqxError, ConfigError
from ..outputs.locations import UnwritableLocation, is_remote, probe_location, write_probe
from .findings import FAIL, OK, WARN, Check, first_line

#: seconds a worker may take to answer before it is reported as hanging
PROBE_TIMEOUT = 15.0
#: libpq connect_timeout of the probe (libpq's minimum is 2 s)
CONNECT_TIMEOUT = 3
#: what identifies a database: the cluster's system identifier (made by initdb, shared by its
#: physical replicas, so a reader endpoint that balances over replicas is still "the same") and
#: the database's oid; where pg_control_system() is not granted, the server's start time instead
_IDENTITY_SQL = (
    "SELECT 'system ' || (SELECT system_identifier FROM pg_control_system())::text || '/' || oid::text"
    " FROM pg_database WHERE datname = current_database()"
)
_FALLBACK_IDENTITY_SQL = (
    "SELECT 'started ' || pg_postmaster_start_time()::text || '/' || oid::text"
    " FROM pg_database WHERE datname = current_database()"
)
_LOCAL_HOSTS = ("localhost", "::1")


# --------------------------------------------------------------------------------------------
# On the worker (and, for the identity and the marker, on the client)
# --------------------------------------------------------------------------------------------
def server_identity(url: str, application_name: str) -> str:
    """What identifies the database ``url`` reaches (see ``_IDENTITY_SQL``); BqxError if it cannot connect."""
    import psycopg2

    from ..db.connect import connect

    conn = connect(url, application_name=application_name, connect_timeout=CONNECT_TIMEOUT, autocommit=True)
    try:
        with conn.cursor() as cur:
            try:
                cur.execute(_IDENTITY_SQL)
            except psycopg2.Error:  # not granted (a managed service): autocommit keeps the session usable
                cur.execute(_FALLBACK_IDENTITY_SQL)
            return str(cur.fetchone()[0])
    finally:
        conn.close()


def _reach(url: str, application_name: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        identity = server_identity(url, application_name)
    except BqxError as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # a probe reports, it never raises
        return {"ok": False, "error": scrub(f"{type(exc).__name__}: {first_line(exc)}", _password(url))}
    return {"ok": True, "identity": identity, "ms": round(1000 * (time.perf_counter() - t0), 1)}


def _write_and_remove(root: str) -> dict[str, Any]:
    try:
        probe_location(root)
    except UnwritableLocation as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # a filesystem that is not installed there, any backend's own error
        return {"ok": False, "error": f"{type(exc).__name__}: {first_line(exc)}"}
    return {"ok": True}


def probe_here(urls: list[str], parquet_dir: str | None, marker: str | None, application_name: str) -> dict[str, Any]:
    """What this process reaches: each URL's server identity, the Parquet location, the marker."""
    out: dict[str, Any] = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "database": [_reach(u, application_name) for u in urls],
    }
    if parquet_dir is not None:
        out["storage"] = _write_and_remove(parquet_dir)
        if marker is not None:
            from ..outputs.parquet import filesystem

            try:
                out["storage"]["sees_marker"] = bool(filesystem(parquet_dir)[0].exists(marker))
            except Exception:
                out["storage"]["sees_marker"] = False
    return out


async def _probe_async(
    urls: list[str], parquet_dir: str | None, marker: str | None, application_name: str, timeout: float
) -> dict[str, Any]:
    """:func:`probe_here` in a thread, so the worker's event loop keeps answering heartbeats."""
    loop = asyncio.get_running_loop()
    work = loop.run_in_executor(None, probe_here, urls, parquet_dir, marker, application_name)
    try:
        return await asyncio.wait_for(work, timeout)
    except asyncio.TimeoutError:
        return {"host": socket.gethostname(), "timeout": True}


# --------------------------------------------------------------------------------------------
# On the client
# --------------------------------------------------------------------------------------------
def probe_workers(
    client: Any,
    url: str | None,
    parquet_dir: str | None,
    *,
    read_url: str | None = None,
    application_name: str = "bqxdask/check",
    timeout: float = PROBE_TIMEOUT,
) -> list[Check]:
    """One line per worker of ``client``: ✅, or ❌ naming the worker, what fails and the fix.

    Parameters
    ----------
    client : distributed.Client
        Connected to the run's scheduler.
    url, read_url : str or None
        The run's database URLs (None: not probed, e.g. a stopped embedded server).
    parquet_dir : str or None
        ``output.parquet_dir`` (None when no Parquet is written): a local path or fsspec URL.
    """
    urls = list(dict.fromkeys(u for u in (url, read_url) if u))
    secrets = tuple(p for p in (_password(u) for u in urls) if p)
    me = socket.gethostname()
    mine = {}
    for u in urls:
        try:
            mine[u] = server_identity(u, application_name)
        except BqxError:
            mine[u] = None  # the database group reports an unreachable server
    marker = None
    if parquet_dir is not None:
        try:  # the client's own probe file stays while the workers look for it
            marker = write_probe(parquet_dir)
        except Exception:  # this machine's disk line reports an unwritable location
            marker = None
    try:
        answers = client.run(
            _probe_async,
            urls,
            parquet_dir,
            marker.path if marker else None,
            application_name,
            timeout,
            on_error="return",
        )
    finally:
        if marker is not None:
            try:
                marker.remove()
            except UnwritableLocation:  # the verdicts are what matter; a leftover probe file is harmless
                pass
    checks = [
        _verdict(addr, answer, urls, mine, parquet_dir, marker is not None, me)
        for addr, answer in sorted(answers.items())
    ]
    return [replace(c, detail=scrub(c.detail, *secrets)) for c in checks]


def require_workers_ready(client: Any, url: str | None, parquet_dir: str | None, **kwargs: Any) -> list[Check]:
    """:func:`probe_workers`, raising :class:`ConfigError` with the first ❌ line (one line).

    Returns the lines otherwise (warnings included) for the caller to log.
    """
    checks = probe_workers(client, url, parquet_dir, **kwargs)
    failed = [c for c in checks if c.status == FAIL]
    if failed:
        more = f" (and {len(failed) - 1} more worker{'s' * (len(failed) != 2)})" if len(failed) > 1 else ""
        raise ConfigError(f"worker {failed[0].detail}{more}")
    return checks


def _verdict(
    addr: str, answer: Any, urls: list[str], mine: dict[str, str | None], parquet_dir: str | None, marked: bool, me: str
) -> Check:
    values: dict[str, Any] = {"worker": addr, "client_host": me}
    if isinstance(answer, BaseException):
        values["error"] = f"{type(answer).__name__}: {first_line(answer)}"
        return Check(
            "plan",
            "worker access",
            FAIL,
            f"{addr}: the probe failed ({values['error']}); fix: check that "
            "bqxdask imports in the worker's environment (see worker software)",
            values,
        )
    host = answer.get("host", "?")
    values.update({"host": host, "same_host": host == me})
    where = f"{addr} on host {host}" + ("" if host == me else f" (this client runs on {me})")
    if answer.get("timeout"):
        return Check(
            "plan",
            "worker access",
            FAIL,
            f"{where}: no answer within {PROBE_TIMEOUT:.0f} s (the database "
            "connection or the Parquet location hangs there); fix: check that host's network and mounts",
            values,
        )
    problems: list[tuple[str, str]] = []
    good: list[str] = []
    values["database"] = []
    for u, got in zip(urls, answer.get("database", [])):
        error = got.get("error", "").split("; fix:")[0]  # the worker's fix assumes the client's host
        target = DbTarget.parse(u)
        label = target.describe()
        local = _local_only(target)
        values["database"].append({"target": label, "local_only_url": local, **got})
        fix_url = (
            "fix: set database.url to the server's network address (a host name or IP every worker "
            "reaches), not a Unix socket or localhost"
        )
        if not got["ok"]:
            if local and host != me:
                problems.append(
                    (
                        FAIL,
                        f"cannot reach {label}: that URL is a Unix socket or localhost, which on "
                        f"host {host} is not this client's server ({error}); {fix_url}",
                    )
                )
            else:
                problems.append(
                    (
                        FAIL,
                        f"{error}; fix: check database.url for the workers, and the network path "
                        f"from host {host} to the server (firewall, security group, pg_hba.conf)",
                    )
                )
        elif mine.get(u) is not None and got["identity"] != mine[u]:
            problems.append((FAIL, f"reaches a different PostgreSQL than this client through {label}; {fix_url}"))
        elif mine.get(u) is None and local and host != me:
            problems.append(
                (
                    WARN,
                    f"reaches a server through {label}, a local-only URL on another host; whether "
                    f"it is this client's cannot be told (this client did not connect); {fix_url}",
                )
            )
        else:
            same = "the same server as this client" if mine.get(u) else "a server"
            good.append(f"reaches {same} through {label} in {got['ms']:.0f} ms")
    storage = answer.get("storage")
    if parquet_dir is not None and storage is not None:
        values["storage"] = {"parquet_dir": parquet_dir, **storage}
        elsewhere = (
            "point output.parquet_dir at storage every host shares (s3://bucket/prefix, or one network "
            "mount at the same path on every host)"
        )
        shared = f"fix: {elsewhere}"
        if not storage["ok"]:
            problems.append(
                (
                    FAIL,
                    f"cannot write and remove a file in {parquet_dir} there ({storage['error']}); "
                    f"fix: make it writable for the worker's user on that host, or {elsewhere}",
                )
            )
        elif marked and not storage.get("sees_marker"):
            problems.append(
                (
                    FAIL,
                    f"does not see the files this client writes in {parquet_dir}: the units would "
                    f"be scattered over the workers' own disks; {shared}",
                )
            )
        elif not marked and host != me and not is_remote(parquet_dir):
            problems.append(
                (
                    FAIL,
                    f"{parquet_dir} is a local path on a worker of another host: the units would be "
                    f"scattered over the workers' own disks; {shared}",
                )
            )
        else:
            good.append(
                f"wrote and removed a file in {parquet_dir}" + (", where it sees this client's files" if marked else "")
            )
    values["problems"] = [text for _, text in problems]
    if problems:
        status = FAIL if any(s == FAIL for s, _ in problems) else WARN
        return Check("plan", "worker access", status, f"{where}: {'; '.join(t for _, t in problems)}", values)
    return Check("plan", "worker access", OK, f"{where}: {'; '.join(good) or 'nothing to probe'}", values)


def _password(url: str) -> str | None:
    try:
        return DbTarget.parse(url).password
    except BqxError:
        return None


def _local_only(target: DbTarget) -> bool:
    """Whether the URL reaches a server only on the host it is used on (socket, localhost)."""
    host = dict(target.query).get("host") or target.host
    return host is None or host.startswith("/") or host.lower() in _LOCAL_HOSTS or host.startswith("127.")
