"""Command line: argument parsing and exit codes only (SPEC §7).

Exit codes: 0 success; 1 a run or command failed; 2 bad configuration, arguments or source
objects, detected before any work started; 130 interrupted. Errors are one line on stderr;
tracebacks go to the run log (``runs/<run_id>/run.log``) or, outside a run, to
``.bqx/last-error.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from . import __version__
from .errors import BqxError

log = logging.getLogger("bqxdask")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message}; fix: see {self.prog} --help\n")


def _csv(text: str) -> list[str]:
    return [p.strip().lower() for p in text.split(",") if p.strip()]


def _ints(text: str) -> list[int]:
    try:
        return [int(p) for p in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML config (default: $BQX_CONFIG or configs/default.toml)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bqxdask", description="Feature-engineering ETL for forex ML: PostgreSQL → Dask → PostgreSQL + Parquet."
    )
    parser.add_argument("--version", action="version", version=f"bqxdask {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("db", help="the embedded PostgreSQL: start | stop | status | url")
    p.add_argument("action", choices=["start", "stop", "status", "url"])
    _common(p)

    p = sub.add_parser("seed", help="write deterministic synthetic bars into the source tables")
    _common(p)
    p.add_argument("--pairs", type=_csv, help="comma-separated pairs (default: run.pairs)")
    p.add_argument("--start", help="first month YYYY-MM (default: run.start)")
    p.add_argument("--end", help="last month YYYY-MM (default: run.end)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--if-empty", action="store_true", help="do nothing when the source already holds bars")

    p = sub.add_parser("import", help="import bar files (HistData, CSV, MT4) into m1_<pair>")
    _common(p)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--pair", required=True)
    p.add_argument("--format", dest="fmt", required=True, choices=["histdata", "csv", "mt4"])
    p.add_argument("--tz-offset", help="±HH:MM offset of the file's times from UTC (csv, mt4)")
    p.add_argument("--ask", nargs="+", metavar="ASK_FILE", help="matching ask-price files: import the bid/ask mid")

    p = sub.add_parser("features", help="compute the feature families (the pipeline)")
    _common(p)
    p.add_argument("--pairs", type=_csv)
    p.add_argument("--start", help="first month YYYY-MM")
    p.add_argument("--end", help="last month YYYY-MM")
    p.add_argument("--families", type=_csv, help="comma-separated families (default: families.enabled)")
    p.add_argument("--workers", type=int, help="LocalCluster workers (cluster.n_workers)")
    p.add_argument("--memory-limit", help="per-worker memory limit, e.g. 2GiB (cluster.memory_limit)")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler (cluster.scheduler_address)")
    p.add_argument("--full-refresh", action="store_true", help="recompute every unit, ignoring checkpoints")
    p.add_argument("--dry-run", action="store_true", help="print the plan and touch nothing")

    p = sub.add_parser("check", help="readiness assessment: can this machine and database take the run?")
    _common(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--pairs", type=_csv, help="assess these pairs (run.pairs)")
    p.add_argument("--start", help="first month YYYY-MM (run.start)")
    p.add_argument("--end", help="last month YYYY-MM (run.end)")
    p.add_argument("--workers", type=int, help="assess this many workers (cluster.n_workers)")
    p.add_argument("--memory-limit", help="assess this per-worker memory limit (cluster.memory_limit)")
    p.add_argument("--scheduler", help="assess an existing Dask scheduler instead of a LocalCluster")

    p = sub.add_parser(
        "select", help="stage 3: dataset, walk-forward feature ranking and significance, on the Dask cluster"
    )
    _common(p)
    p.add_argument("--pairs", type=_csv)
    p.add_argument(
        "--horizons", type=_ints, help="comma-separated horizons in bars (default: families.select.horizons)"
    )
    p.add_argument("--start", help="first month YYYY-MM")
    p.add_argument("--end", help="last month YYYY-MM")
    p.add_argument("--workers", type=int, help="LocalCluster workers (cluster.n_workers)")
    p.add_argument("--memory-limit", help="per-worker memory limit, e.g. 2GiB (cluster.memory_limit)")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler (cluster.scheduler_address)")

    p = sub.add_parser("report", help="a static HTML page (Bokeh) of one pair-month's index and features")
    _common(p)
    p.add_argument("--pair", required=True)
    p.add_argument("--month", required=True, help="YYYY-MM")
    p.add_argument("--output", metavar="FILE", help="where to write the page (default: reports/<pair>-<month>.html)")
    return parser


def _load(args: argparse.Namespace):
    from .config import load_config, with_overrides

    cfg = load_config(args.config)
    run = {
        "pairs": getattr(args, "pairs", None),
        "start": getattr(args, "start", None),
        "end": getattr(args, "end", None),
    }
    if run["start"] and not run["end"] and run["start"] > cfg.run.end:
        run["end"] = run["start"]  # --start alone past the configured end: that one month
    cluster = {
        "n_workers": getattr(args, "workers", None),
        "memory_limit": getattr(args, "memory_limit", None),
        "scheduler_address": getattr(args, "scheduler", None),
    }
    return with_overrides(cfg, run=run, cluster=cluster)


# -- commands ---------------------------------------------------------------------------------
def cmd_db(args: argparse.Namespace) -> int:
    from .db import embedded_server

    cfg = _load(args)
    if args.action == "url":
        from .db.urls import DbTarget

        if cfg.database.url:
            print(DbTarget.parse(cfg.database.url).without_password())
            return 0
        server = embedded_server(cfg)
        print(server.public_url)
        print(f"password: in {server.password_file} (readable by you only)", file=sys.stderr)
        return 0
    if cfg.database.url:
        from .db.urls import describe_url

        print(f"database.url is set ({describe_url(cfg.database.url)}): bqxdask does not manage that server")
        return 0 if args.action == "status" else 2
    server = embedded_server(cfg)
    status = {"start": server.start, "stop": server.stop, "status": server.status}[args.action]()
    print(status.describe())
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from .db import database_url
    from .ingest.seed import database_has_bars, seed_database

    cfg = _load(args)
    url = database_url(cfg)
    pairs = list(cfg.run.pairs)
    if args.if_empty and database_has_bars(url, cfg.database.source_schema, pairs):
        print(f"seed: {cfg.database.source_schema} already holds bars for {', '.join(pairs)}; nothing to do")
        return 0
    report = seed_database(url, cfg.database.source_schema, pairs, cfg.run.start, cfg.run.end, seed=args.seed)
    for line in report.pair_lines():
        print(line)
    print(report.summary_line())
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .config import validate_pair
    from .db import database_url
    from .ingest.importer import import_files

    cfg = _load(args)
    pair = validate_pair(args.pair.lower(), "--pair")
    url = database_url(cfg)
    report = import_files(
        url, cfg.database.source_schema, pair, args.files, args.fmt, tz_offset=args.tz_offset, ask_files=args.ask
    )
    print(report.summary_line())
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from .pipeline.cluster import forkserver_ahead

    cfg = _load(args)
    # the workers' forkserver warms up while this process imports the pipeline and plans
    with forkserver_ahead(cfg) if not args.dry_run else contextlib.nullcontext():
        from .pipeline import run_features

        result = run_features(cfg, families=args.families, full_refresh=args.full_refresh, dry_run=args.dry_run)
    return result.exit_code


def cmd_check(args: argparse.Namespace) -> int:
    from .readiness import run_check

    cfg = _load(args)
    return run_check(cfg, as_json=args.json)


def cmd_select(args: argparse.Namespace) -> int:
    from .select import run_select

    cfg = _load(args)
    return run_select(cfg, horizons=args.horizons)


def cmd_report(args: argparse.Namespace) -> int:
    from .calendar import parse_month
    from .config import validate_pair
    from .report import make_report

    cfg = _load(args)
    pair = validate_pair(args.pair.lower(), "--pair")
    parse_month(args.month, "--month")
    path = make_report(cfg, pair, args.month, output=args.output)
    print(f"report: {path}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "db": cmd_db,
    "seed": cmd_seed,
    "import": cmd_import,
    "features": cmd_features,
    "check": cmd_check,
    "select": cmd_select,
    "report": cmd_report,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BqxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        _record(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; fix: rerun the same command — finished units are kept", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line here, the traceback in a file
        path = _record(exc)
        where = f" (traceback in {path})" if path else ""
        from .db.urls import scrub

        text = scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        print(
            f"error: internal error {type(exc).__name__}: {text}{where}; fix: report it with that file", file=sys.stderr
        )
        return 1


def run() -> NoReturn:
    """``main`` as a process: parse ``sys.argv``, run, exit with its code (``python -m bqxdask``)."""
    code = main()
    # everything the run left is garbage now: the interpreter's exit-time collections over it
    # took ~0.5 s of the command's wall time (issue 15). Frozen objects are skipped by them;
    # atexit handlers, logging's flush and the modules' teardown still run.
    gc.freeze()
    raise SystemExit(code)


def _record(exc: BaseException) -> Path | None:
    """Log the traceback to the run log if one is open, else to .bqx/last-error.log."""
    from .db.urls import scrub

    text = scrub("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    if handlers:
        log.debug("traceback:\n%s", text)
        return Path(handlers[0].baseFilename)
    try:
        path = Path(".bqx") / "last-error.log"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path
    except OSError:
        return None


if __name__ == "__main__":  # pragma: no cover
    run()
