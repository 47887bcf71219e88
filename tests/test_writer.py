"""Feature tables as the writer creates them, on a real PostgreSQL (SPEC §6; issue 15)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from dbutil import query
from pipeline_util import unique_schema
from psycopg2 import sql

from bqxdask.db.connect import connection
from bqxdask.db.writer import copy_buffer, ensure_feature_table


def _targets(url: str, schema: str, table: str) -> dict[str, int | None]:
    """Column → attstattarget (None or -1: the server's default_statistics_target)."""
    rows = query(
        url,
        "SELECT a.attname, a.attstattarget FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s "
        "AND a.attnum > 0 AND NOT a.attisdropped",
        (schema, table),
    )
    return dict(rows)


@pytest.fixture
def schema(pg_url) -> str:
    name = unique_schema("writer")
    with connection(pg_url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        conn.commit()
    return name


def test_feature_columns_are_left_out_of_analyze_and_time_keeps_its_statistics(pg_url, schema):
    cols = ["a_1", "b_2", "c_3"]
    n = 5000
    rng = np.random.default_rng(0)
    times = (np.arange(n, dtype="int64") * 60 + 1_700_000_000) * 1_000_000
    with connection(pg_url) as conn, conn.cursor() as cur:
        assert ensure_feature_table(cur, schema, "fam_eurusd", cols) == []
        cur.copy_expert(
            f'COPY "{schema}".fam_eurusd (time, a_1, b_2, c_3) FROM STDIN (FORMAT binary)',
            io.BytesIO(copy_buffer(times, rng.normal(size=(n, 3)))),
        )
        conn.commit()
        cur.execute(sql.SQL("ANALYZE {}.fam_eurusd").format(sql.Identifier(schema)))
        conn.commit()
    targets = _targets(pg_url, schema, "fam_eurusd")
    assert {c: targets[c] for c in cols} == dict.fromkeys(cols, 0)
    assert targets["time"] in (None, -1)
    analysed = query(
        pg_url, "SELECT attname FROM pg_stats WHERE schemaname = %s AND tablename = 'fam_eurusd'", (schema,)
    )
    assert analysed == [("time",)]
    # the row count the planner sees is still kept by ANALYZE
    assert query(pg_url, "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (f"{schema}.fam_eurusd",)) == [
        (float(n),)
    ]


def test_added_columns_get_no_statistics_and_a_chosen_target_is_left_alone(pg_url, schema):
    with connection(pg_url) as conn, conn.cursor() as cur:
        ensure_feature_table(cur, schema, "fam_usdjpy", ["a_1", "b_2"])
        cur.execute(
            sql.SQL("ALTER TABLE {}.fam_usdjpy ALTER COLUMN a_1 SET STATISTICS 250").format(sql.Identifier(schema))
        )
        assert ensure_feature_table(cur, schema, "fam_usdjpy", ["a_1", "b_2", "d_4"]) == []
        conn.commit()
    targets = _targets(pg_url, schema, "fam_usdjpy")
    assert (targets["a_1"], targets["b_2"], targets["d_4"]) == (250, 0, 0)
