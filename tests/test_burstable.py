"""A burstable cloud instance is named with its baseline and what it means for the planned run (SPEC §8).

The DMI product name is read from a file the test writes (EC2 Nitro writes the instance type
there), so the machine under test need not be a t3.
"""

from __future__ import annotations

import pytest
from dbutil import load_bars
from pipeline_util import make_config, unique_schema

from bqxdask import readiness
from bqxdask.pipeline.estimate import DEFAULT_PREPARE_SECONDS_PER_ROW, measured_seconds_per_row
from bqxdask.readiness import burstable
from bqxdask.readiness.findings import OK, WARN
from bqxdask.testing import eurusd

SRC = "src_burst"


@pytest.fixture
def dmi(tmp_path):
    def write(name: str) -> str:
        path = tmp_path / "product_name"
        path.write_text(name + "\n")
        return str(path)

    return write


def test_the_credit_table_obeys_awss_own_formulas():
    """Baseline = credits per hour / vCPUs / 60 and the accrual limit = 24 h of credits, for every type."""
    assert len(burstable.CREDIT_TABLE) == 4 * 7
    for name, (vcpus, per_hour, limit, baseline) in burstable.CREDIT_TABLE.items():
        assert per_hour / vcpus / 60 == pytest.approx(baseline, rel=1e-12), name
        assert limit == pytest.approx(24 * per_hour, rel=1e-12), name
    assert burstable.burstable_type("t3.2xlarge") == burstable.Burstable("t3.2xlarge", 8, 192, 4608, 0.40)


def test_a_t3_2xlarge_running_all_cores_warns_with_the_numbers(dmi):
    # 8 threads for 20 h: 8 × 60 credits spent and 192 earned per hour, 288 net, 5,760 in 20 h
    core_seconds = 8 * 20 * 3600.0
    c = burstable.instance_check(core_seconds, 8, paths=[dmi("t3.2xlarge")])
    assert c.status == WARN and c.group == "machine" and c.name == "instance"
    assert c.detail.startswith("EC2 t3.2xlarge is burstable: baseline 40 % of each of 8 vCPUs (3.2 vCPUs' worth)")
    assert c.values["hours_on_full_balance"] == pytest.approx(4608 / 288)  # 16 h
    assert c.values["net_credits_needed"] == pytest.approx(288 * 20)
    assert c.values["slowdown_at_baseline"] == pytest.approx(8 / 3.2)
    assert (
        "~9,600 core-min (~20.0 h at full speed) spends ~5,760 credits more than it earns, more than even a "
        "full balance holds"
    ) in c.detail
    assert "a full balance (4,608 credits) lasts ~16.0 h of this load" in c.detail
    assert "~2.5× slower" in c.detail and "unlimited mode keeps the speed and bills the surplus" in c.detail
    assert "fix:" in c.detail


def test_a_short_run_fits_in_a_full_balance_but_still_warns(dmi):
    c = burstable.instance_check(8 * 3600.0, 8, paths=[dmi("t3a.2xlarge")])  # 1 h at 8 threads: 288 net credits
    assert c.status == WARN and c.values["net_credits_needed"] == pytest.approx(288)
    assert "288 credits more than it earns, within a full balance" in c.detail
    assert "a T3/T3a/T4g starts with none" in c.detail


def test_threads_within_the_baseline_are_ok(dmi):
    c = burstable.instance_check(3600.0, 2, paths=[dmi("t3.2xlarge")])  # 2 threads < 3.2 vCPUs' baseline
    assert c.status == OK and "within the baseline" in c.detail
    assert burstable.instance_check(3600.0, 1, paths=[dmi("t3.xlarge")]).status == OK  # 1 < 4 × 40 %
    assert burstable.instance_check(3600.0, 2, paths=[dmi("t3.xlarge")]).status == WARN
    assert burstable.instance_check(3600.0, 1, paths=[dmi("t2.medium")]).status == WARN  # 1 > 2 × 20 %


def test_other_machines(dmi, tmp_path):
    c = burstable.instance_check(3600.0, 8, paths=[dmi("m6i.2xlarge")])
    assert c.status == OK and c.values == {"product_name": "m6i.2xlarge", "burstable": False}
    assert burstable.instance_check(3600.0, 8, paths=[str(tmp_path / "missing")]) is None
    assert burstable.burstable_type("HVM domU") is None and burstable.burstable_type("Standard PC (Q35)") is None
    assert burstable.burstable_type("t4g.nano").baseline == 0.05


def test_check_reports_the_instance_against_the_planned_run(pg_url, tmp_path, dmi):
    load_bars(pg_url, SRC, "eurusd", eurusd(1))
    cfg = make_config(
        pg_url,
        tmp_path,
        source_schema=SRC,
        output_schema=unique_schema("burst"),
        pairs=["eurusd"],
        start="2017-01",
        end="2017-01",
        families=["bqx", "reg_rate"],
        extra={"cluster": {"n_workers": 8, "memory_limit": "256MiB"}},
    )
    result = readiness.assess(cfg, dmi_files=[dmi("t3.2xlarge")])
    report = result.to_dict()
    (line,) = [c for c in report["checks"] if c["name"] == "instance"]
    assert line["group"] == "machine" and line["status"] == "warn"
    assert line["values"]["type"] == "t3.2xlarge" and line["values"]["busy_vcpus"] == 8
    (source,) = [c for c in report["checks"] if c["group"] == "source tables"]
    rows = source["values"]["rows_in_months"]
    per_row, _ = measured_seconds_per_row(cfg.run.runs_dir)
    expected = rows["2017-01"] * (DEFAULT_PREPARE_SECONDS_PER_ROW + per_row["bqx"] + per_row["reg_rate"])
    assert line["values"]["core_seconds"] == pytest.approx(expected, rel=1e-12)
    text = result.to_text()
    machine = text[text.index("\nMachine\n") : text.index("\nPlan\n")]
    assert "⚠️  instance" in machine and "EC2 t3.2xlarge is burstable" in machine
