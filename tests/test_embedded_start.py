"""The embedded PostgreSQL starts even when another process takes its port first (SPEC §1).

The server is given a free port, and binds it a moment later, in its own process; anything
that binds the same port in between (a Dask worker, a parallel test) used to make the start fail.
The race is made certain here: the port the server is given is held by a listening socket.
"""

from __future__ import annotations

import logging
import socket

import psycopg2

from bqxdask.db import server_os
from bqxdask.db.embedded import EmbeddedPostgres
from bqxdask.db.urls import DbTarget


def test_a_port_taken_before_the_server_binds_it_is_replaced(tmp_path, monkeypatch, caplog):
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    real_free_port = server_os.free_port
    ports = iter([taken])
    # the first port the server is given is the held one, and it looked free when it was chosen
    monkeypatch.setattr(server_os, "free_port", lambda: next(ports, None) or real_free_port())
    monkeypatch.setattr(server_os, "port_taken", lambda port: False)
    server = EmbeddedPostgres(tmp_path / "pgdata")
    try:
        with caplog.at_level(logging.INFO, logger="bqxdask.db.embedded"):
            status = server.start()
        assert status.running
        assert status.port != taken
        assert f"port {taken} of the embedded PostgreSQL was taken as it started" in caplog.text
        conn = psycopg2.connect(**DbTarget.parse(server.url).connect_kwargs(connect_timeout=10))
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW port")
                assert int(cur.fetchone()[0]) == status.port
        finally:
            conn.close()
    finally:
        holder.close()
        server.destroy()
