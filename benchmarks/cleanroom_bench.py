"""Clean-room privacy engine benchmark: ``run_plan`` against the same SQL in plain pyspark, in one run.

Rows ``{name, value, unit, baseline, ratio}``:

* ``cleanroom_run_plan``: seconds of ``check_query`` + ``run_plan`` (the runtime's distinct-identity
  thresholds per dataset, suppressed-group count) for the demo query (two datasets joined on the
  identity, grouped by region); baseline: ``spark.sql(<the same query>).collect()`` over the same
  cached DataFrames. Target ratio <= 1.3.
* ``cleanroom_run_plan_dp``: the same with differential privacy asked by both owners (clamping,
  one row per identity, OpenDP Laplace noise); baseline: the plain query again.
* ``cleanroom_driver_jvm_peak``: peak resident memory (VmHWM) of the Spark driver JVM over the
  whole run, MB; ``cleanroom_driver_python_peak``: peak RSS of the Python driver, MB (no baseline).

Each dataset has ``BENCH_CLEANROOM_ROWS`` rows (default 1,000,000; half of B's patients are in A),
generated inside Spark and cached before timing; every query runs once to warm up, then
``BENCH_CLEANROOM_REPEAT`` (default 3) times each, interleaved; the best time counts. Spark runs in
``local[2]`` in a child process (``python -m benchmarks.cleanroom_bench --child``).

    python -m benchmarks.cleanroom_bench [--json]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import common
from benchmarks.common import row

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROWS = 1_000_000
QUERY = (
    "SELECT a.region, COUNT(DISTINCT a.patient_id) AS n, SUM(a.visits + b.visits) AS visits "
    "FROM visits_a a JOIN visits_b b ON a.patient_id = b.patient_id GROUP BY a.region"
)


def _rules(dataset: str, dp: bool):
    from include.cleanroom.rules import AnalysisRules  # noqa: PLC0415

    data = {
        "dataset": dataset,
        "identityColumns": ["patient_id"],
        "dimensions": ["region", "age_band"],
        "aggregates": {"visits": ["sum", "avg", "count"], "*": ["count"]},
        "joinColumns": ["patient_id"],
        "k": 5,
    }
    if dp:
        data["dp"] = {"epsilonPerQuery": 1.0, "totalBudget": 100.0, "bounds": {"visits": [0, 10]}}
    return AnalysisRules.from_data(data)


def _child(rows: int, repeat: int) -> dict:
    from pyspark.sql import SparkSession  # noqa: PLC0415
    from pyspark.sql import functions as F  # noqa: N812, PLC0415

    from include.cleanroom.enforce import run_plan  # noqa: PLC0415
    from include.cleanroom.sql import check_query  # noqa: PLC0415

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("cleanroom-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.runSQLOnFiles", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    regions = F.array(*[F.lit(r) for r in ("north", "south", "east", "west", "centre", "coast", "hills", "isles")])
    bands = F.array(*[F.lit(b) for b in ("20-29", "30-39", "40-49", "50-59", "60-69")])

    def dataset(offset: int):
        df = spark.range(offset, offset + rows).select(
            F.concat(F.lit("p"), F.col("id").cast("string")).alias("patient_id"),
            F.element_at(regions, (F.col("id") % 8 + 1).cast("int")).alias("region"),
            F.element_at(bands, (F.col("id") % 5 + 1).cast("int")).alias("age_band"),
            ((F.col("id") * 7919) % 11).cast("int").alias("visits"),
        )
        df = df.cache()
        df.count()
        return df

    views = {"visits_a": dataset(0), "visits_b": dataset(rows // 2)}
    for name, df in views.items():
        df.createOrReplaceTempView(name)
    plain_rules = {d: _rules(d, False) for d in views}
    dp_rules = {d: _rules(d, True) for d in views}

    def plain():
        for name, df in views.items():
            df.createOrReplaceTempView(name)
        return spark.sql(QUERY).collect()

    def cleanroom():
        return run_plan(spark, check_query(QUERY, plain_rules, 5), views)

    def cleanroom_dp():
        return run_plan(spark, check_query(QUERY, dp_rules, 5), views, rng_seed=1)

    cases = {"plain": plain, "cleanroom": cleanroom, "cleanroom_dp": cleanroom_dp}
    best = {name: float("inf") for name in cases}
    for fn in cases.values():  # warm-up (JIT, code generation)
        fn()
    for _ in range(repeat):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    check = cleanroom()
    baseline_rows = sorted(tuple(r) for r in plain())
    assert sorted(check.rows) == baseline_rows, "the clean room's result differs from plain Spark's"
    jvm_pid = spark.sparkContext._jvm.ProcessHandle.current().pid()
    hwm_kb = 0
    for line in Path(f"/proc/{jvm_pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm_kb = int(line.split()[1])
    spark.stop()
    return {
        **best,
        "jvm_peak_mb": hwm_kb / 1024,
        "python_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "groups": len(check.rows),
    }


def run(size_mb: int | None = None, workdir: str | None = None) -> list[dict]:
    """The rows above; ``size_mb`` is not used (this suite's size is ``BENCH_CLEANROOM_ROWS``)."""
    rows = int(os.environ.get("BENCH_CLEANROOM_ROWS", DEFAULT_ROWS))
    repeat = int(os.environ.get("BENCH_CLEANROOM_REPEAT", 3))
    res = subprocess.run(
        [sys.executable, "-m", "benchmarks.cleanroom_bench", "--child", str(rows), str(repeat)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        check=True,
    )
    m = json.loads(res.stdout.decode().strip().splitlines()[-1])
    return [
        row("cleanroom_run_plan", m["cleanroom"], "s", m["plain"]),
        row("cleanroom_run_plan_dp", m["cleanroom_dp"], "s", m["plain"]),
        row("cleanroom_driver_jvm_peak", m["jvm_peak_mb"], "MB", 0),
        row("cleanroom_driver_python_peak", m["python_peak_mb"], "MB", 0),
    ]


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        out = _child(int(sys.argv[2]), int(sys.argv[3]))
        print(json.dumps(out), flush=True)
    else:
        common.main(run, __doc__, quiet_stdout=True)
