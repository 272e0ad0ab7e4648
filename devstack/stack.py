"""The local stack: ``make up`` / ``make down`` / ``make demo``.

Everything lives under the git-ignored ``.local/``: AIRFLOW_HOME is ``.local/airflow``, the
stand-ins keep their state in ``.local/<name>/``, pid files in ``.local/run/``, process logs in
``.local/airflow/logs/stack/``. ``down`` stops exactly the process groups ``up`` recorded.

Environment: ``AIRFLOW_PORT`` (default 8080), ``AIRFLOW_DB=postgres`` (metadata DB in the local
PostgreSQL, database ``airflow_local``; default: SQLite in AIRFLOW_HOME), ``SDP_LOCAL`` (another
state directory than ``.local``), ``SDP_FREE_PORTS=1`` (stand-ins on free ports, not their defaults).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from devstack.airflow_stack import AirflowStack
from devstack.checks import MissingService, require_services
from devstack.procs import StackError, port_open, stop_pid_dir

ROOT = Path(__file__).resolve().parents[1]
LOCAL = Path(os.environ.get("SDP_LOCAL") or ROOT / ".local").resolve()
HOME = LOCAL / "airflow"
RUN = LOCAL / "run"
STATE = RUN / "stack.json"


def _running() -> list[str]:
    alive = []
    for pid_file in RUN.glob("*.pid") if RUN.is_dir() else []:
        try:
            os.kill(int(pid_file.read_text().strip()), 0)
            alive.append(pid_file.stem)
        except (ValueError, ProcessLookupError):
            continue
    return alive


def pipeline_dag_ids() -> list[str]:
    """The DAG ids defined in dags/, without importing them: each file is ``dags/<dag_id>.py``
    (docs/CONVENTIONS.md; tests/unit/test_dag_integrity.py holds every file to it)."""
    return [path.stem for path in sorted((ROOT / "dags").glob("*.py")) if not path.name.startswith("_")]


def attach() -> AirflowStack:
    """A client for the running local stack (does not start anything)."""
    if not STATE.exists():
        raise StackError("the local stack is not running: start it with `make up`")
    info = json.loads(STATE.read_text())
    stack = AirflowStack(HOME, port=info["port"], local=LOCAL, executor=info["executor"], database=info["database"])
    stack.vars = info.get("vars", {})
    return stack


def up(port: int, database: str) -> AirflowStack:
    if _running():
        stack = attach()
        print(f"the local stack is already running ({', '.join(sorted(_running()))})")
        return stack
    require_services("postgres", "rabbitmq")
    if port_open(port):
        raise StackError(f"port {port} is already in use by another program: set AIRFLOW_PORT to a free port")
    for stale in RUN.glob("*.pid") if RUN.is_dir() else []:
        stale.unlink()
    started = time.monotonic()
    fixed = os.environ.get("SDP_FREE_PORTS") != "1"  # tests set it to run beside a developer's stack
    stack = AirflowStack(HOME, port=port, local=LOCAL, fixed_ports=fixed, pid_dir=RUN, database=database)
    stack.start()
    RUN.mkdir(parents=True, exist_ok=True)
    STATE.write_text(json.dumps({"port": port, "executor": stack.executor, "database": database,
                                 "vars": stack.vars, "fixed_ports": fixed}))
    dag_ids = pipeline_dag_ids()
    stack.wait_for_dags(dag_ids)
    for dag_id in dag_ids:  # DAGs are paused when first parsed; the local stack runs its pipelines
        stack.unpause(dag_id)
    print(f"local stack up in {time.monotonic() - started:.0f}s: {len(dag_ids)} DAGs unpaused")
    print_access(stack)
    return stack


def print_access(stack: AirflowStack) -> None:
    print(f"  Airflow UI:  {stack.base_url}")
    print(f"  user:        {stack.username}")
    print(f"  password:    {stack.password}   (stored in {HOME / 'passwords.json'})")
    print("  stop it with `make down`")


def down() -> list[str]:
    info = json.loads(STATE.read_text()) if STATE.exists() else {}
    stopped = stop_pid_dir(RUN, grace=15)
    if info and not info.get("fixed_ports", True):  # a throw-away stack's own queues and databases
        stack = AirflowStack(HOME, port=info["port"], local=LOCAL, fixed_ports=False)
        stack.vars = info.get("vars", {})
        stack.stop()
    STATE.unlink(missing_ok=True)
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack.stack", description="the local Airflow stack")
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    port = int(os.environ.get("AIRFLOW_PORT", "8080"))
    database = "airflow_local" if os.environ.get("AIRFLOW_DB", "sqlite") == "postgres" else "sqlite"
    try:
        if args.command == "up":
            up(port, database)
        elif args.command == "down":
            stopped = down()
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        else:
            running = _running()
            print(f"running: {', '.join(sorted(running))}" if running else "the local stack is not running")
    except (MissingService, StackError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
