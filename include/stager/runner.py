"""Run a transfer as the submitting user, in a child process.

The parent (the Airflow worker) starts ``python -m include.stager.runner`` and writes the job spec
(with the decrypted password) to its stdin: never argv, never the environment. When the worker
runs as root the child gets the stager user's uid, gid and groups; otherwise only the worker's own
user is accepted; in both cases only a user the stager's rules allow
(:func:`include.stager.accounts.check_stager_user`: never root, no system account, allow-listed).
The child writes one JSON event per line on stdout: ``progress``, then ``done``
or ``error`` (with ``kind`` ``user``, ``config``, ``timeout``, ``cancelled`` or ``transient``, the
bare ``message`` and its ``hint``), rebuilt as the same class of ``include.stager.errors`` here.

The child's interpreter is the worker's own unless ``python`` names another (the ``runner_python``
setting): the worker's interpreter often lives where stager users cannot execute it (a pyenv under
``/root``). Another interpreter of the same Python version gets the project and the worker's
site-packages on ``PYTHONPATH``; both must be readable by the stager users.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import signal
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from include.stager.accounts import check_stager_user
from include.stager.errors import (
    Cancelled,
    ConfigurationError,
    StagerError,
    TransferTimeout,
    TransientError,
    UserError,
)

ROOT = Path(__file__).resolve().parents[2]
RULES = ("min_uid", "max_uid", "allowed_users", "allowed_groups")
# the kinds of error events, most specific first: the child names one, the parent raises its class
ERROR_KINDS: dict[str, type[StagerError]] = {
    "user": UserError, "config": ConfigurationError, "timeout": TransferTimeout, "cancelled": Cancelled,
    "transient": TransientError,
}


def identity(stager_user: str, rules: Mapping | None = None) -> dict:
    """The Popen arguments that make the child run as ``stager_user``; refuses what cannot be done.

    :param rules: ``min_uid``, ``max_uid``, ``allowed_users``, ``allowed_groups`` of
        :func:`include.stager.accounts.check_stager_user` (the stager settings); missing ones take
        its defaults, so an empty allow-list refuses everyone.
    """
    account = check_stager_user(stager_user, **{k: v for k, v in (rules or {}).items() if k in RULES})
    if os.geteuid() == 0:
        groups = os.getgrouplist(account.name, account.gid)
        return {"user": account.uid, "group": account.gid, "extra_groups": groups, "home": account.home}
    me = pwd.getpwuid(os.geteuid()).pw_name
    if account.uid != os.geteuid():
        raise UserError(f"the worker runs as {me!r} (not root) and can only transfer as {me!r}, "
                        f"not as stagerUser {stager_user!r}")
    return {}


def child_pythonpath(python: str, current: str = "") -> str:
    """PYTHONPATH of the child: the project, plus this environment's site-packages for another interpreter."""
    parts = [str(ROOT)]
    if os.path.abspath(python) != os.path.abspath(sys.executable):  # a venv is known by its own path
        for key in ("purelib", "platlib"):
            path = sysconfig.get_paths()[key]
            if path not in parts:
                parts.append(path)
    return os.pathsep.join([*parts, current]).rstrip(os.pathsep)


def run_as(spec: dict, stager_user: str, *, on_progress: Callable[[dict], None],
           cancel: threading.Event | None = None, on_start: Callable[[subprocess.Popen], None] | None = None,
           log: logging.Logger | None = None, python: str | None = None,
           rules: Mapping | None = None) -> dict:
    """Run the transfer described by ``spec`` as ``stager_user``; the final progress or a StagerError.

    :param python: the interpreter of the child (default: the worker's).
    :param rules: who may run transfers (see :func:`identity`); checked before anything starts.
    """
    log = log or logging.getLogger(__name__)
    python = python or sys.executable
    ident = identity(stager_user, rules)
    home = ident.pop("home", None)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env["PYTHONPATH"] = child_pythonpath(python, env.get("PYTHONPATH", ""))
    if home:
        env.update(HOME=home, USER=stager_user, LOGNAME=stager_user)
    try:
        proc = subprocess.Popen([python, "-m", "include.stager.runner"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/", env=env,
                                start_new_session=True, text=True, **ident)
    except (PermissionError, FileNotFoundError) as exc:
        raise ConfigurationError(f"the transfer program cannot run as {stager_user!r}: {exc}; the Python "
                                 "environment of the workers must be readable by every stager user "
                                 "(see the runner_python setting)") from None
    if on_start:
        on_start(proc)
    stderr_lines: list[str] = []

    def pump_stderr():
        for line in proc.stderr:
            line = line.rstrip()
            stderr_lines.append(line)
            del stderr_lines[:-50]
            log.info("%s", line)

    stderr_pump = threading.Thread(target=pump_stderr, daemon=True)
    stderr_pump.start()
    watcher_stop = threading.Event()

    def watch_cancel():
        while not watcher_stop.wait(0.5):
            if cancel is not None and cancel.is_set():
                terminate(proc)
                return

    threading.Thread(target=watch_cancel, daemon=True).start()
    try:
        try:
            proc.stdin.write(json.dumps(spec))
            proc.stdin.close()
        except BrokenPipeError:  # the child died at once (e.g. a runner interpreter that cannot start)
            with contextlib.suppress(OSError):
                proc.stdin.close()
        result: dict | None = None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                log.info("%s", line.rstrip())
                continue
            if event.get("event") == "progress":
                on_progress(event["progress"])
            elif event.get("event") in ("done", "error"):
                result = event
        proc.wait()
    finally:
        watcher_stop.set()
        if proc.poll() is None:
            terminate(proc)
    if cancel is not None and cancel.is_set():
        raise Cancelled("the job was cancelled")
    if result is None:
        stderr_pump.join(5)
        tail = "\n".join(stderr_lines[-10:])
        if "ModuleNotFoundError" in tail or "ImportError" in tail:
            raise ConfigurationError(f"the transfer program cannot start with {python}: {tail}; the runner "
                                     "interpreter must be the workers' Python version and read their site-packages")
        raise TransientError(f"the transfer process ended without a result (exit {proc.returncode}): {tail}")
    if result["event"] == "error":
        cls = ERROR_KINDS.get(result.get("kind"), TransientError)
        raise cls(result["message"], hint=result.get("hint"))
    return result["progress"]


def terminate(proc: subprocess.Popen, grace: float = 5.0) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def child_main() -> int:
    """The child: read the spec from stdin, run the sync, print events."""
    from include.stager.irods import IrodsAccount
    from include.stager.paths import parse_endpoint
    from include.stager.transfer import Sync

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    out_lock = threading.Lock()

    def emit(event: dict) -> None:
        with out_lock:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()

    spec = json.loads(sys.stdin.read())
    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    parent = os.getppid()

    def orphan_watch():  # the worker was killed without on_kill: stop rather than run unsupervised
        while not cancel.wait(1.0):
            if os.getppid() != parent:
                cancel.set()

    threading.Thread(target=orphan_watch, daemon=True).start()
    logging.getLogger(__name__).info("running as uid=%s gid=%s with %s", os.getuid(), os.getgid(), sys.executable)
    try:
        sync = Sync(parse_endpoint(spec["src"]), parse_endpoint(spec["dst"]), IrodsAccount(**spec["irods"]),
                    threads=spec.get("threads", 4), num_threads=spec.get("num_threads", 4),
                    parallel_threshold=spec.get("parallel_threshold", 32 * 1024 * 1024),
                    timeout=spec.get("timeout", 0),
                    timeout_noprogress=spec.get("timeout_noprogress", 0),
                    report=lambda p: emit({"event": "progress", "progress": p.as_dict()}),
                    report_interval=spec.get("report_interval", 10), cancel=cancel)
        progress = sync.run()
    except StagerError as exc:
        kind = next((k for k, cls in ERROR_KINDS.items() if isinstance(exc, cls)), "transient")
        emit({"event": "error", "kind": kind, "message": exc.reason, "hint": exc.hint})
        return 1
    emit({"event": "done", "progress": progress.as_dict()})
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
