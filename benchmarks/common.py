"""What every benchmark suite shares: result rows, timing a child process, the command line."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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


def timed_child(argv: list[str], capture: bool = False, **kwargs) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB of that child alone via wait4, its stdout if captured)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE if capture else kwargs.pop("stdout", None), **kwargs)
    out = proc.stdout.read().decode() if capture and proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{argv[:3]} failed with exit {proc.returncode}")
    return wall, usage.ru_maxrss / 1024, out


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
