"""What every benchmark suite shares: result rows, timing a child process, the command line."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable


def row(name: str, value: float, unit: str, baseline: float) -> dict:
    """One measurement with the baseline measured in the same run, and their ratio."""
    return {
        "name": name,
        "value": round(value, 3),
        "unit": unit,
        "baseline": round(baseline, 3),
        "ratio": round(value / baseline, 3) if baseline else None,
    }


# A forked child counts its parent's resident pages until it execs, so ru_maxrss of a child of a
# large process (the benchmark runner after an Airflow stack or a big tree) is at least the
# parent's size. The measured program is therefore forked from this small launcher instead.
_LAUNCH = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def timed_child(argv: list[str], capture: bool = False, **kwargs) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB of the program alone, its stdout if captured)."""
    with tempfile.NamedTemporaryFile(prefix="rss-", suffix=".txt") as rss_file:
        start = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", _LAUNCH, rss_file.name, *argv],
                             stdout=subprocess.PIPE if capture else kwargs.pop("stdout", None), **kwargs)
        wall = time.perf_counter() - start
        if res.returncode:
            raise RuntimeError(f"{argv[:3]} failed with exit {res.returncode}")
        rss_kb = int(open(rss_file.name).read() or 0)
    return wall, rss_kb / 1024, res.stdout.decode() if capture and res.stdout else ""


def main(run: Callable[..., list[dict]], description: str, argv: list[str] | None = None,
         quiet_stdout: bool = False) -> None:
    """``--size-mb``, ``--workdir``, ``--json``; prints the rows as a table or JSON."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mb", type=int, default=None, help="large size in MB (default: $BENCH_SIZE_MB or 1024)")
    p.add_argument("--workdir", default=None, help="where the temporary files go (default: system temp)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if quiet_stdout:  # code under test may log to stdout: keep stdout for the results only
        saved = os.dup(1)
        os.dup2(2, 1)
    try:
        rows = run(args.size_mb, args.workdir)
    finally:
        if quiet_stdout:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'name':32} {'value':>10} {'unit':5} {'baseline':>10} {'ratio':>7}")
    for r in rows:
        print(f"{r['name']:32} {r['value']:>10} {r['unit']:5} {r['baseline']:>10} {str(r['ratio']):>7}")
