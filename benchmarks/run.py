"""`make bench`: every pipeline's benchmark, ratios against baselines measured in the same run.

Each suite's ``run()`` returns rows ``{name, value, unit, baseline, ratio}``. The rows are
printed as a table and written to ``.local/bench/latest.json``. ``BENCH_SIZE_MB`` sets the large
file size (default 1024); ``BENCH_ONLY=ega,hpcs`` picks suites; ``BENCH_CLEANROOM_ROWS`` sets the clean
room's rows per dataset (default 1,000,000).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".local" / "bench" / "latest.json"
SUITES = ("ega", "hpcs", "stager", "cleanroom")


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def main() -> int:
    only = [s for s in os.environ.get("BENCH_ONLY", ",".join(SUITES)).split(",") if s]
    size_mb = int(os.environ.get("BENCH_SIZE_MB", "1024"))
    rows, failures = [], []
    work = Path(os.environ.get("BENCH_WORKDIR") or tempfile.mkdtemp(prefix="bench-", dir=ROOT / ".local"
                                                                  if (ROOT / ".local").is_dir() else None))
    for suite in only:
        started = time.monotonic()
        print(f"== {suite}: running (size {size_mb} MB) ...", flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{suite}_bench")
            (work / suite).mkdir(parents=True, exist_ok=True)
            suite_rows = module.run(size_mb=size_mb, workdir=str(work / suite))
        except Exception as exc:  # noqa: BLE001 - one broken suite must not hide the others' numbers
            failures.append(f"{suite}: {type(exc).__name__}: {exc}")
            print(f"   FAILED: {exc}", flush=True)
            continue
        for row in suite_rows:
            rows.append({"suite": suite, **row})
        print(f"   done in {time.monotonic() - started:.0f}s", flush=True)
    if not os.environ.get("BENCH_WORKDIR"):
        shutil.rmtree(work, ignore_errors=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "size_mb": size_mb,
                               "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                               "rows": rows, "failures": failures}, indent=2))
    width = max([len(r["name"]) for r in rows] + [10])
    print(f"\n{'suite':<7} {'measure':<{width}} {'value':>12} {'unit':<8} {'baseline':>12} {'ratio':>8}")
    for r in rows:
        print(f"{r['suite']:<7} {r['name']:<{width}} {fmt(r['value']):>12} {r['unit']:<8} "
              f"{fmt(r.get('baseline')):>12} {fmt(r.get('ratio')):>8}")
    print(f"\nwritten to {OUT}")
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
