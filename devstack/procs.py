"""Start and stop the processes of a stack: own process groups, pid files, escalation to SIGKILL.

Airflow's scheduler and api-server do not stop their children on SIGTERM, so every process is
started in a session of its own and stopped by signalling its whole process group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from devstack.registry import SERVICES, Service


class StackError(RuntimeError):
    """A process of the stack could not be started or did not become ready."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class Proc:
    name: str
    pid: int
    log: Path
    popen: subprocess.Popen | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def spawn(name: str, argv: list[str], *, env: Mapping[str, str], log_dir: Path, cwd: Path,
          pid_dir: Path | None = None) -> Proc:
    """Start ``argv`` in a new session (its own process group), output to ``log_dir/<name>.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with open(log, "ab") as out:
        popen = subprocess.Popen(  # noqa: S603 - argv built from our own registry
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=dict(env), cwd=str(cwd), start_new_session=True,
        )
    if pid_dir is not None:
        pid_dir.mkdir(parents=True, exist_ok=True)
        (pid_dir / f"{name}.pid").write_text(f"{popen.pid}\n")
    return Proc(name=name, pid=popen.pid, log=log, popen=popen)


def stop_group(pid: int, grace: float = 15.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL what is left after ``grace`` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        try:  # reap our own child so that it does not linger as a zombie
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def stop_all(procs: Iterable[Proc], grace: float = 15.0) -> None:
    for proc in reversed(list(procs)):
        stop_group(proc.pid, grace)


def stop_pid_dir(pid_dir: Path, grace: float = 15.0) -> list[str]:
    """Stop every process group recorded in ``pid_dir`` (what ``up`` started), newest first."""
    stopped = []
    files = sorted(pid_dir.glob("*.pid"), key=lambda p: p.stat().st_mtime, reverse=True) if pid_dir.is_dir() else []
    for pid_file in files:
        try:
            pid = int(pid_file.read_text().strip())
        except ValueError:
            pid_file.unlink(missing_ok=True)
            continue
        stop_group(pid, grace)
        pid_file.unlink(missing_ok=True)
        stopped.append(pid_file.stem)
    return stopped


def wait_ready(proc: Proc, check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not proc.alive():
            raise StackError(f"{proc.name} exited before {what}; last log lines:\n{proc.log_tail()}")
        time.sleep(0.2)
    raise StackError(f"{proc.name}: no {what} after {timeout:.0f}s; last log lines:\n{proc.log_tail()}")


def service_vars(names: Iterable[str], *, fixed_ports: bool) -> dict[str, str]:
    """The SDP_* port variables of the given stand-ins: their defaults, or free ports."""
    out: dict[str, str] = {}
    for name in names:
        svc = SERVICES[name]
        pairs = dict(svc.extra_vars)
        if svc.port_var:
            pairs[svc.port_var] = svc.default_port or 0
        for var, default in pairs.items():
            out[var] = str(default if fixed_ports and default else free_port())
        suffix = "" if fixed_ports else f"_{os.getpid()}_{free_port()}"
        for var, default_name in svc.names.items():
            out[var] = default_name + suffix
    return out


def with_needs(names: Iterable[str]) -> list[str]:
    """``names`` and what they need, in start order."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        for dep in SERVICES[name].needs:
            visit(dep)
        order.append(name)

    for name in names:
        visit(name)
    return order


def start_service(svc: Service, *, variables: Mapping[str, str], local: Path, log_dir: Path,
                  cwd: Path, env: Mapping[str, str] | None = None, pid_dir: Path | None = None,
                  timeout: float = 60.0) -> Proc:
    state = local / svc.name
    state.mkdir(parents=True, exist_ok=True)
    fmt = {**variables, "state": str(state), "local": str(local), "python": sys.executable}
    argv = [part.format(**fmt) for part in svc.argv]
    proc_env = {**os.environ, **(env or {}), **variables, "SDP_LOCAL": str(local),
                **{k: v.format(**fmt) for k, v in svc.env.items()}}
    proc = spawn(f"devstack-{svc.name}", argv, env=proc_env, log_dir=log_dir, cwd=cwd, pid_dir=pid_dir)
    if svc.port_var:
        port = int(variables[svc.port_var])
        wait_ready(proc, lambda: port_open(port), timeout, f"port {port} open")
    if svc.ready_file:
        ready = Path(svc.ready_file.format(**fmt))
        wait_ready(proc, ready.exists, timeout, f"{ready}")
    return proc
