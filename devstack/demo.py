"""``make demo``: bring the local stack up and run each pipeline end to end through the REST API."""

from __future__ import annotations

import sys
from collections.abc import Callable

from devstack.airflow_stack import AirflowStack, RunResult
from devstack.procs import StackError
from devstack.stack import print_access, up

DemoStep = Callable[[AirflowStack], bool]


def print_run(title: str, result: RunResult) -> None:
    print(f"\n== {title}: {result.dag_id} run {result.run_id}: {result.state.upper()}")
    for task, state in sorted(result.tasks.items()):
        print(f"   {state or 'none':>9}  {task}")


def healthcheck(stack: AirflowStack) -> bool:
    result = stack.run("platform_healthcheck", timeout=300)
    print_run("Platform health check", result)
    for task, state in sorted(result.tasks.items()):
        if state != "success":
            last = [line for line in result.log(task).splitlines() if "not usable" in line or "OK" in line]
            print(f"   {task}: {last[-1] if last else '(see the task log in the UI)'}")
    return result.state == "success"


STEPS: list[tuple[str, DemoStep]] = [("platform health check", healthcheck)]


def main() -> int:
    import os  # noqa: PLC0415

    port = int(os.environ.get("AIRFLOW_PORT", "8080"))
    database = "airflow_local" if os.environ.get("AIRFLOW_DB", "sqlite") == "postgres" else "sqlite"
    try:
        stack = up(port, database)
        results = [(name, step(stack)) for name, step in STEPS]
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n== Demo summary")
    for name, ok in results:
        print(f"   {'OK ' if ok else 'FAILED'}  {name}")
    print()
    print_access(stack)
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
