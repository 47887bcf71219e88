"""The pipeline benchmark's report: the table against the floor, where the time went, the verdicts.

:func:`print_report` prints the numbers :func:`bench_pipeline.measure` collected (stdout is the
report) and adds ``old_total`` and ``verdicts`` to them for the JSON.
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
from timing import mib

from bqxdask.config import parse_memory

TARGET_E2E = 2.0  # end to end ≤ 2× floor
TARGET_READ = 2.0  # Dask read ≤ 2× COPY-out floor
TARGET_COMPUTE = 0.5  # "well under" the write floor: at most half of it
TARGET_HEADROOM = 2.0  # peak RSS ≤ memory_limit / 2
LINEAR_SLACK = 1.2  # t(k×)/t(1×) ≤ 1.2·k counts as linear


def fmt_rate(x: float | None) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    for scale, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if x >= scale:
            return f"{x / scale:.2f}{unit}" if scale > 1e3 else f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"


def fmt_s(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}" if x >= 1000 else f"{x:.2f}" if x >= 1 else f"{x:.3f}"


def fmt_x(x: float | None) -> str:
    if not x:
        return "—"
    return f"{x:,.0f}×" if x >= 10 else f"{x:.1f}×" if x >= 1 else f"{x:.2f}×"


def old_totals(o: dict[str, Any]) -> tuple[float, float, float]:
    """The old way's (compute, write, total) seconds, extrapolated to the run."""
    compute = sum(f["seconds"] for f in o["families"].values())
    write = sum(w["insert"] for w in o["write"].values())
    return compute, write, o["read"] + compute + write


def stage_row(
    stage: str,
    seconds: float | None,
    *,
    rows: float | None,
    values: float | None = None,
    floor_s: float | None = None,
    before: float | None = None,
) -> dict[str, Any]:
    return {
        "stage": stage,
        "seconds": seconds,
        "rows_s": rows / seconds if seconds and rows else None,
        "values_s": values / seconds if seconds and values else None,
        "ratio": seconds / floor_s if seconds and floor_s else None,
        "before": before,
        "speedup": before / seconds if before and seconds else None,
    }


def build_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The main table: stage, seconds, rows/s, values/s, ratio to floor, before, speed-up."""
    best = r["best_run"]["summary"]
    tot = best["total"]
    rows_n, values_n = tot["rows"], tot["values"]
    floor_out, floor_in = r["floor_out"]["seconds"], r["floor_in"]["seconds"]
    floor = floor_out + floor_in
    o = r["old"]
    fam_floor = r["floor_in"]["per_family"]
    old_compute, old_write, old_total = old_totals(o)
    rows: list[dict[str, Any]] = []

    def add(stage: str, seconds: float | None, rows_: float | None = rows_n, **kw: float | None) -> None:
        rows.append(stage_row(stage, seconds, rows=rows_, **kw))

    add("plan (dry run, wall)", r["plan"])
    add("read, in-process (wall)", r["read"]["in_process"], floor_s=floor_out, before=o["read"])
    add("read, through Dask (wall)", r["read"]["dask"], floor_s=floor_out, before=o["read"])
    add("prepare: quarantine + index (task s)", tot["prepare"])
    for name, f in best["families"].items():
        add(
            f"compute {name} (task s)",
            f["seconds_compute"],
            values=f["values"],
            floor_s=fam_floor.get(name),
            before=o["families"].get(name, {}).get("seconds"),
        )
    add("compute, all families (task s)", tot["seconds_compute"], values=values_n, floor_s=floor_in, before=old_compute)
    add(
        "SQL write: copy_buffer + COPY (task s)",
        tot["seconds_sql"],
        values=values_n,
        floor_s=floor_in,
        before=old_write,
    )
    add("Parquet write (task s)", tot["seconds_parquet"], values=values_n, floor_s=floor_in)
    add("end to end, cluster given (wall)", r["best_run"]["seconds"], values=values_n, floor_s=floor, before=old_total)
    add(
        "end to end, incl. LocalCluster (wall)", r["e2e_with_cluster"], values=values_n, floor_s=floor, before=old_total
    )
    if "e2e_cli" in r:
        add("end to end, CLI subprocess (wall)", r["e2e_cli"], values=values_n, floor_s=floor, before=old_total)
    add("floor (a): COPY TO, source bars", floor_out, floor_s=floor_out, rows_=r["floor_out"]["rows"])
    add("floor (b): COPY FROM, features", floor_in, values=values_n, floor_s=floor_in)
    add("floor = (a) + (b)", floor, values=values_n, floor_s=floor)
    r["old_total"] = old_total
    return rows


def unit_line(u: dict[str, Any]) -> str:
    c, b, p = (sum(u[k].values()) for k in ("compute", "copy_buffer", "parquet"))
    ru = u["rusage"]
    return (
        f"compute {c:.3f} s, copy_buffer {b:.3f} s, Parquet {p:.3f} s (CPU user {ru['user']:.1f} s, sys "
        f"{ru['sys']:.1f} s, {ru['minflt'] / 1e6:.2f} M page faults over the loop)"
    )


def print_header(r: dict[str, Any]) -> None:
    s, o = r["setup"], r["old"]
    tot = r["best_run"]["summary"]["total"]
    print(
        f"bench_pipeline: bqxdask {r['machine']['bqxdask']}, {len(s['pairs'])} pairs ({', '.join(s['pairs'])}) × "
        f"{s['start']}..{s['end']} = {s['units']} units, {len(s['families'])} families; "
        f"{tot['rows']:,} rows, {tot['values']:,.0f} values written; {r['machine']['cpus']} CPUs, load average at "
        f"start {r['machine']['load_at_start'][0]:.1f}" + (" [QUICK]" if s["quick"] else "")
    )
    print(
        "(wall) = elapsed; (task s) = sum of the seconds the units' tasks report = core-seconds over the 2 "
        "workers, not wall time. Ratios: reads to floor (a), compute/writes to floor (b) (per family: to that "
        "family's tables), end to end to (a) + (b). Best of "
        f"{len(r['runs'])} runs (each end-to-end line too); the floor measured between them."
    )
    print(
        f"before = the old per-partition scripts (benchmarks/old_way.py), run once, timed on {o['sample_unit']} "
        f"— vectorised parts on the whole month, rolling apply and rolling np.polyfit on {o['sample_rows']:,} "
        f"rows, row-by-row INSERT on {o['insert_rows']:,} rows per family — and EXTRAPOLATED to the run's "
        f"{o['total_rows']:,} rows; reads in full. The old scripts wrote no Parquet.\n"
    )
    print_vcpu(r)


def print_vcpu(r: dict[str, Any]) -> None:
    """How fast this machine's vCPUs were at the start and the end (benchmarks/vcpu.py)."""
    v = r.get("vcpu")
    if not v:
        return
    alone = [t for probe in v.values() for t in probe["alone_all"]]
    repeats = min(len(probe["together_all"]) for probe in v.values())
    print(
        f"the vCPUs' speed (a fixed loop, CPU s, median of {repeats}; alone / on every vCPU at once = factor): "
        + "; ".join(f"{k} {p['alone']:.2f} / {p['together']:.2f} = {p['factor']:.2f}×" for k, p in v.items())
        + f". The same loop alone took {min(alone):.2f}–{max(alone):.2f} s ({max(alone) / min(alone):.2f}× "
        "spread): the machine's own speed moves by that much between measurements, and every ratio below "
        "compares measurements taken at different moments.\n"
    )


def print_table(r: dict[str, Any]) -> None:
    rows = build_rows(r)
    width = max(len(x["stage"]) for x in rows)
    head = (
        f"{'stage':<{width}}  {'seconds':>8}  {'rows/s':>8}  {'values/s':>8}  {'ratio to floor':>14}  "
        f"{'before (old way)':>16}  {'speed-up':>8}"
    )
    print(head)
    print("-" * len(head))
    for x in rows:
        print(
            f"{x['stage']:<{width}}  {fmt_s(x['seconds']):>8}  {fmt_rate(x['rows_s']):>8}  "
            f"{fmt_rate(x['values_s']):>8}  {fmt_x(x['ratio']):>14}  {fmt_s(x['before']):>16}  "
            f"{fmt_x(x['speedup']):>8}"
        )
    fo, fi = r["floor_out"], r["floor_in"]
    print(
        f"floor (a) {fo['rows']:,} rows, {mib(fo['bytes']):.1f} MiB; floor (b) "
        f"{mib(fi['bytes']):.0f} MiB, {len(fi['per_unit']) * len(r['setup']['families'])} COPYs (table rows "
        f"{fi['rows']:,}), 1 session (repetitions {', '.join(f'{x:.2f}' for x in fi['all'])} s; PostgreSQL CPU "
        f"{fi['postgres_cpu']:.1f} s); over 2 sessions {fi['parallel_2_sessions']:.2f} s (PostgreSQL CPU "
        f"{fi.get('parallel_2_sessions_postgres_cpu', float('nan')):.1f} s)"
    )
    walls = r.get("e2e_walls", {})
    if walls:
        names = {"e2e_with_cluster": "incl. LocalCluster", "e2e_cli": "CLI subprocess"}
        print(
            "end-to-end repetitions: "
            + "; ".join(f"{names[k]} {', '.join(f'{x:.2f}' for x in v)} s" for k, v in walls.items() if v)
        )


def print_old_way(r: dict[str, Any]) -> None:
    o, floor_in = r["old"], r["floor_in"]["seconds"]
    tot = r["best_run"]["summary"]["total"]
    ow = o["write"]
    t_sql = sum(w["to_sql"] for w in ow.values())
    t_csv = sum(w["csv_copy"] for w in ow.values())
    t_ins = sum(w["insert"] for w in ow.values())
    print(
        f"\nwrite paths for the run's rows (sampled on {o['insert_rows']:,} rows per family, extrapolated): "
        f"row-by-row INSERT {t_ins:,.0f} s = {t_ins / floor_in:,.0f}× floor (b); pandas to_sql default "
        f"{t_sql:,.0f} s = {t_sql / floor_in:,.0f}×; to_csv + COPY {t_csv:,.0f} s = {t_csv / floor_in:,.0f}×; "
        f"bqxdask {tot['seconds_sql']:.1f} task s = {tot['seconds_sql'] / floor_in:.1f}×"
    )
    agree = {k: v for k, v in o["agreement"].items() if not k.endswith("_nan_mismatch")}
    worst = max(agree.items(), key=lambda kv: kv[1])
    nan_mis = {k: v for k, v in o["agreement"].items() if k.endswith("_nan_mismatch")}
    print(
        f"the old way computes the same values: worst |old − bqxdask|/max(1,|bqxdask|) on its sample = "
        f"{worst[1]:.1e} ({worst[0]})" + (f"; NaN placement differs: {nan_mis}" if nan_mis else "")
    )


def print_where_time_went(r: dict[str, Any]) -> None:
    best = r["best_run"]
    tot = best["summary"]["total"]
    cpu, wk, cpus = best["cpu"], best["workers"], r["machine"]["cpus"]
    print(
        f"\nwhere the run's time went (best run; CPU accounting over {cpu['wall']:.1f} s × {cpus} CPUs = "
        f"{cpu['capacity']:.1f} core-s): PostgreSQL {cpu['postgres']:.1f}, Dask workers {cpu['dask']:.1f} (user "
        f"{wk['user']:.1f}, sys {wk['sys']:.1f}, {wk['minflt'] / 1e6:.1f} M minor page faults), client + scheduler "
        f"{cpu['client']:.1f}, other processes {cpu['other']:.1f}, idle "
        f"{max(0.0, cpu['capacity'] - cpu['machine']):.1f} core-s"
    )
    fi_cpu = r["floor_in"]["postgres_cpu"]
    print(
        f"server work: PostgreSQL {cpu['postgres']:.1f} core-s inside the run (reads, plan, DELETE + COPY + "
        f"checkpoint per unit, autovacuum that ran meanwhile) vs {fi_cpu:.1f} core-s for floor (b)'s COPY of the "
        f"same rows = {cpu['postgres'] / max(fi_cpu, 1e-9):.2f}× (vs the same COPYs over 2 sessions, as the run's "
        f"2 workers write: {cpu['postgres'] / max(r['floor_in'].get('parallel_2_sessions_postgres_cpu', 0), 1e-9):.2f}×)"
    )
    by_backend = best.get("postgres_by_backend", {})
    print(
        "PostgreSQL by process: "
        + ", ".join(f"{k} {v:.1f}" for k, v in by_backend.items() if k != "total" and abs(v) >= 0.05)
    )
    if cpu["other"] > 0.1 * cpu["capacity"]:
        print(
            f"NOTE: the machine was busy — other processes took {cpu['other'] / cpu['capacity']:.0%} of it during "
            "the run (the floor's single session needs one core, the run both): ratios are pessimistic"
        )
    tasks = tot["seconds_compute"] + tot["seconds_sql"] + tot["seconds_parquet"] + tot["prepare"]
    print(
        f"task seconds: compute {tot['seconds_compute']:.1f}, SQL {tot['seconds_sql']:.1f}, Parquet "
        f"{tot['seconds_parquet']:.1f}, prepare {tot['prepare']:.1f} = {tasks:.1f} over 2 workers "
        f"(= {tasks / 2:.1f} s if perfectly parallel; wall {best['seconds']:.1f} s)"
    )


def compute_ratios(r: dict[str, Any]) -> dict[str, Any]:
    """Compute of one pair-month against floor (b) of its rows: alone on a worker, in this
    process, and inside the run (median and range over the units)."""
    uw, up = r["unit_worker"], r["unit_process"]
    units = r["best_run"]["summary"]["units"]
    per_unit_floor = r["floor_in"]["per_unit"]
    ratios = sorted(u["compute"] / per_unit_floor[key] for key, u in units.items())
    first_unit = next(iter(per_unit_floor))
    unit_floor = per_unit_floor[first_unit]
    return {
        "worker": sum(uw["compute"].values()) / unit_floor,
        "process": sum(up["compute"].values()) / unit_floor,
        "median": statistics.median(ratios),
        "range": (ratios[0], ratios[-1]),
        "unit": first_unit,
        "unit_floor": unit_floor,
    }


def print_one_unit(r: dict[str, Any], c: dict[str, Any]) -> None:
    uw, up = r["unit_worker"], r["unit_process"]
    print(
        f"one pair-month alone ({uw['rows']:,} rows, best of {r['setup']['repeat_small']}): on an idle Dask "
        f"worker {unit_line(uw)}"
    )
    print(f"                                   in the benchmark process {unit_line(up)}")
    print(f"  worker malloc environment: {r['worker_env']}")
    print(
        "  per family, worker / process (s): "
        + ", ".join(f"{k} {uw['compute'][k]:.3f}/{up['compute'][k]:.3f}" for k in uw["compute"])
    )
    lo, hi = c["range"]
    print(
        f"\ncompute of one pair-month (all families) against floor (b) of its rows ({c['unit']}: "
        f"{c['unit_floor']:.2f} s): alone on a worker {c['worker']:.2f}×, alone in this process "
        f"{c['process']:.2f}×; inside the run (task s, sharing the cores) median {c['median']:.2f}× (range "
        f"{lo:.2f}–{hi:.2f})"
    )


def print_scaling(r: dict[str, Any]) -> None:
    print("\nscaling (cluster given, 2 workers)")
    print(
        f"  {'size':>4}  {'months':<18}{'units':>5}  {'rows':>9}  {'wall s':>7}  {'t/t(1×)':>8}  "
        f"{'task s':>7}  {'task/task(1×)':>13}  {'µs/row (wall)':>13}"
    )
    base = r["scaling"][0]
    for x in r["scaling"]:
        print(
            f"  {str(x['factor']) + '×':>4}  {x['months']:<18}{x['units']:>5}  {x['rows']:>9,}  {x['seconds']:>7.2f}  "
            f"{x['seconds'] / base['seconds']:>8.2f}  {x['task_seconds']:>7.1f}  "
            f"{x['task_seconds'] / base['task_seconds']:>13.2f}  {x['seconds'] / x['rows'] * 1e6:>13.1f}"
        )
    w = r["workers"]
    print(
        f"  workers, {w['months']} ({w['rows']:,} rows): 1 worker {w['one']:.2f} s, 2 workers {w['two']:.2f} s → "
        f"speed-up {w['one'] / w['two']:.2f}× (PostgreSQL's COPY runs on the same 2 cores)"
    )


def memory_figures(r: dict[str, Any]) -> dict[str, float]:
    mem = r["memory"]
    return {
        "limit": parse_memory(mem["memory_limit"], "memory_limit"),
        "peak": max(mem["ru_maxrss"].values()),
        "spilled": sum(v["disk_write_count"] for v in mem["spill"].values()),
    }


def print_memory(r: dict[str, Any], m: dict[str, float]) -> None:
    mem = r["memory"]
    print(
        "\nmemory: peak RSS per worker (ru_maxrss of the benchmark's workers after run 1): "
        + ", ".join(f"{mib(v):.0f} MiB" for v in mem["ru_maxrss"].values())
        + "; sampled every 0.1 s during run 1: "
        + ", ".join(f"{mib(v):.0f} MiB" for v in mem["sampled_peak"].values())
        + f"; memory_limit {mem['memory_limit']} → headroom {m['limit'] / max(m['peak'], 1):.1f}×"
    )
    print(
        f"spilling: {m['spilled']:.0f} keys written to disk by the workers' SpillBuffer"
        + (
            f"; worker log: {mem['log_messages'][:3]}"
            if mem["log_messages"]
            else "; no memory warnings in the worker logs"
        )
    )


def print_estimates(r: dict[str, Any]) -> None:
    """The numbers of bqxdask/pipeline/estimate.py, measured."""
    best = r["best_run"]["summary"]
    tot = best["total"]
    print(
        "\nmeasured task seconds per source row (compute + Parquet + SQL, inside the run), for "
        "bqxdask/pipeline/estimate.py DEFAULT_SECONDS_PER_ROW:"
    )
    print("    " + ", ".join(f'"{k}": {v["seconds"] / v["rows"]:.1e}' for k, v in best["families"].items()))
    prep_row = (tot["prepare"] + r["read"]["in_process"]) / tot["rows"]
    print(f"    DEFAULT_PREPARE_SECONDS_PER_ROW (read in-process + quarantine + prepare): {prep_row:.1e}")


def verdicts(r: dict[str, Any], c: dict[str, Any], m: dict[str, float]) -> list[tuple[str, bool, str]]:
    """(target, met, text) for each target of issue 6."""
    floor, e2e = r["floor"], r["best_run"]["seconds"]
    two = r["floor_out"]["seconds"] + r["floor_in"]["parallel_2_sessions"]
    e2e_miss = (
        ""
        if e2e <= TARGET_E2E * floor
        else (f"; missed by {e2e - TARGET_E2E * floor:.2f} s = {e2e / (TARGET_E2E * floor) - 1:.0%}")
    )
    t_read, fo_s = r["read"]["dask"], r["floor_out"]["seconds"]
    read_miss = "" if t_read <= TARGET_READ * fo_s else f"; missed by {t_read - TARGET_READ * fo_s:.3f} s"
    mem = r["memory"]
    sc = r["scaling"]
    base, w = sc[0], r["workers"]
    lin = all(x["seconds"] / base["seconds"] <= LINEAR_SLACK * x["factor"] for x in sc[1:])
    return [
        (
            "end_to_end",
            e2e <= TARGET_E2E * floor,
            f"end to end (cluster given) {e2e:.2f} s = {e2e / floor:.2f}× the floor {floor:.2f} s (target ≤ "
            f"{TARGET_E2E:.1f}×{e2e_miss}); incl. LocalCluster {r['e2e_with_cluster'] / floor:.2f}×"
            + (f", CLI {r['e2e_cli'] / floor:.2f}×" if "e2e_cli" in r else "")
            + f"; to the 2-session floor {e2e / two:.2f}×",
        ),
        (
            "read",
            t_read <= TARGET_READ * fo_s,
            f"read through Dask {t_read:.3f} s = {t_read / fo_s:.2f}× the COPY-out floor {fo_s:.3f} s (target ≤ "
            f"{TARGET_READ:.0f}×{read_miss}); in-process {r['read']['in_process'] / fo_s:.2f}×",
        ),
        (
            "compute",
            c["worker"] <= TARGET_COMPUTE,
            f"compute of one pair-month, all families, alone on a worker = {c['worker']:.3f}× the write floor of its "
            f"rows (target: well under, ≤ {TARGET_COMPUTE:.1f}×); in this process {c['process']:.2f}×, inside "
            f"the run {c['median']:.2f}×",
        ),
        (
            "memory",
            m["peak"] * TARGET_HEADROOM <= m["limit"] and m["spilled"] == 0,
            f"peak RSS per worker {mib(m['peak']):.0f} MiB vs memory_limit {mem['memory_limit']}: headroom "
            f"{m['limit'] / max(m['peak'], 1):.1f}× (target ≥ {TARGET_HEADROOM:.0f}×), {m['spilled']:.0f} keys spilled",
        ),
        (
            "scaling",
            lin,
            "cost grows linearly: "
            + ", ".join(
                f"t({x['factor']}×)/t(1×) = {x['seconds'] / base['seconds']:.2f} (task s "
                f"{x['task_seconds'] / base['task_seconds']:.2f})"
                for x in sc[1:]
            )
            + f" (linear: ≤ {LINEAR_SLACK}·k); 1→2 workers {w['one'] / w['two']:.2f}×",
        ),
    ]


def print_report(r: dict[str, Any]) -> None:
    print_header(r)
    print_table(r)
    print_old_way(r)
    print_where_time_went(r)
    c = compute_ratios(r)
    print_one_unit(r, c)
    print_scaling(r)
    m = memory_figures(r)
    print_memory(r, m)
    print_estimates(r)
    print("\ntargets (issue 6)")
    r["verdicts"] = {}
    for key, ok, text in verdicts(r, c, m):
        r["verdicts"][key] = {"pass": bool(ok), "text": text}
        print(f"  {'PASS' if ok else 'MISS'}  {text}")
