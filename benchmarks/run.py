"""``make bench``: the regression-kernel and statistics benchmarks, then the end-to-end pipeline benchmark (issue 6).

``.venv/bin/python benchmarks/run.py [--quick] [--skip-reg] [--skip-stats] [--json FILE]``. It is a report, not
a test: the exit code is 0 when the benchmarks ran, whether or not a target was met (each
prints PASS/MISS lines), and non-zero only when one of them failed with an error.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a small pipeline benchmark (1 pair-month; the smoke test)"
    )
    parser.add_argument("--skip-reg", action="store_true", help="skip the regression-kernel benchmark")
    parser.add_argument("--skip-stats", action="store_true", help="skip the statistics benchmark")
    parser.add_argument(
        "--json", help="where bench_pipeline writes its numbers (default benchmarks/results/latest.json)"
    )
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    failed = []
    if not args.skip_reg:
        print("=" * 100 + "\nbench_reg — rolling polynomial regression kernel (SPEC §4.6)\n" + "=" * 100, flush=True)
        try:
            import bench_reg

            bench_reg.main()
        except Exception:
            traceback.print_exc()
            failed.append("bench_reg")
    if not args.skip_stats:
        print(
            "=" * 100
            + "\nbench_stats — statistics_rate against pandas' rolling equivalents (SPEC §4.4, issue 15)\n"
            + "=" * 100,
            flush=True,
        )
        try:
            import bench_stats

            bench_stats.main()
        except Exception:
            traceback.print_exc()
            failed.append("bench_stats")
    print(
        "\n"
        + "=" * 100
        + "\nbench_pipeline — bqxdask features end to end against the database floor (issue 6)\n"
        + "=" * 100,
        flush=True,
    )
    try:
        import bench_pipeline

        bench_pipeline.main((["--quick"] if args.quick else []) + (["--json", args.json] if args.json else []))
    except Exception:
        traceback.print_exc()
        failed.append("bench_pipeline")
    print(f"\nmake bench: {time.perf_counter() - t0:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
