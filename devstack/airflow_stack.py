"""A real Airflow 3 deployment on this machine: the local stack and the e2e test harness.

``AirflowStack`` configures an AIRFLOW_HOME through environment variables, migrates the
metadata database, applies ``airflow_settings.yaml``, starts the devstack stand-ins and the
Airflow components (api-server, scheduler, dag-processor, triggerer; Celery workers on the
CeleryExecutor), each in its own process group, and drives runs through the REST API.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devstack.procs import Proc, StackError, free_port, spawn, start_service, stop_all, with_needs
from devstack.registry import SERVICES

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
TERMINAL = {"success", "failed"}
PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/{db}"
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
# the simple auth manager's role names, as the harness's callers may still give them
_SIMPLE_ROLES = {"admin": "Admin", "op": "Op", "user": "User", "viewer": "Viewer"}


def fab_role(role: str) -> str:
    return _SIMPLE_ROLES.get(role, role)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (created 0600, never briefly wider)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def create_pg_database(name: str) -> None:
    import psycopg2  # noqa: PLC0415

    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def drop_pg_database(name: str) -> None:
    import psycopg2  # noqa: PLC0415

    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def delete_amqp_names(names: Mapping[str, str]) -> None:
    """Delete per-stack queues and exchanges (``SDP_*_QUEUE`` / ``SDP_*_EXCHANGE``) from the local RabbitMQ."""
    if not names:
        return
    import pika  # noqa: PLC0415

    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672, connection_attempts=1))
    except Exception as exc:  # noqa: BLE001 - best effort at teardown, said plainly
        print(f"warning: could not clean up RabbitMQ names: {exc}", file=sys.stderr)
        return
    try:
        ch = conn.channel()
        for var, name in names.items():
            if var.endswith("_QUEUE"):
                ch.queue_delete(name)
            else:
                ch.exchange_delete(name)
    finally:
        conn.close()


@dataclass
class RunResult:
    """The end of a DAG run as the REST API reports it."""

    stack: AirflowStack
    dag_id: str
    run_id: str
    state: str
    tasks: dict[str, str]
    try_numbers: dict[str, int] = field(default_factory=dict)

    def log(self, task_id: str, map_index: int = -1) -> str:
        key = task_id if map_index < 0 else f"{task_id}[{map_index}]"
        return self.stack.task_log(self.dag_id, self.run_id, task_id, map_index, self.try_numbers.get(key, 1))

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        return self.stack.xcom(self.dag_id, self.run_id, task_id, key, map_index)

    def explain(self) -> str:
        """The error lines of every failed task, for assertion messages and the demo."""
        out = []
        for key, state in sorted(self.tasks.items()):
            if state != "failed":
                continue
            task_id, _, index = key.partition("[")
            log = self.log(task_id, int(index.rstrip("]")) if index else -1)
            errors = [line for line in log.splitlines() if line.startswith(("error", "critical"))]
            out.append(f"{key}: " + (errors[-1][:1500] if errors else log[-1500:]))
        return "\n".join(out)

    def __repr__(self) -> str:
        return f"RunResult({self.dag_id}/{self.run_id}: {self.state}, tasks={self.tasks})"


class AirflowStack:
    """One Airflow deployment. Use ``start()``/``stop()`` or as a context manager.

    :param home: AIRFLOW_HOME (created); logs and pid files go below it.
    :param executor: ``LocalExecutor`` or ``CeleryExecutor``.
    :param database: ``sqlite`` (file in home) or the name of a PostgreSQL database (created).
    :param port: api-server port (a free one when None).
    :param services: devstack stand-ins to start (default: all registered).
    :param fixed_ports: give stand-ins their default ports (local stack) instead of free ones.
    :param pid_dir: where to record pids (so that ``down`` can stop exactly what ``up`` started).
    :param workers: Celery workers to start.
    :param password: the admin password (random when None).
    :param users: more users, name -> role: a role of the FAB auth manager (``Admin``, ``Op``, ``User``,
        ``Viewer``, or one of ``sensitive_data.auth.roles.CUSTOM_ROLES`` such as ``Researcher``); the
        simple auth manager's lower-case names (``viewer``, ``user``, ``op``, ``admin``) still work.
        Their random passwords are in ``passwords``; ``api_as(name, ...)`` calls the REST API as them.
    """

    def __init__(self, home: Path, *, executor: str = "LocalExecutor", database: str = "sqlite",
                 port: int | None = None, services: Iterable[str] | None = None, fixed_ports: bool = False,
                 local: Path | None = None, pid_dir: Path | None = None, workers: int = 2,
                 password: str | None = None, drop_database: bool = False, extra_env: Mapping[str, str] | None = None,
                 users: Mapping[str, str] | None = None):
        self.home = Path(home).resolve()
        self.executor = executor
        self.database = database
        self.port = port or free_port()
        self.services = list(SERVICES) if services is None else list(services)
        self.fixed_ports = fixed_ports
        self.local = Path(local).resolve() if local else self.home / "devstack"
        self.pid_dir = pid_dir
        self.workers = workers
        self.drop_database = drop_database
        self.extra_env = dict(extra_env or {})
        self.procs: list[Proc] = []
        self.vars: dict[str, str] = {}
        self.username = "admin"
        self.password = password or self._stored_password()
        self.users = {name: fab_role(role) for name, role in {self.username: "Admin", **(users or {})}.items()}
        self.passwords = self._stored_passwords()
        self.passwords[self.username] = self.password
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._token: str | None = None
        self._tokens: dict[str, str] = {}
        self._client = httpx.Client(base_url=self.base_url, timeout=30)

    # ---------------------------------------------------------------- configuration
    def _stored_password(self) -> str:
        path = self.home / "passwords.json"
        if path.exists():
            return json.loads(path.read_text()).get("admin") or secrets.token_urlsafe(12)
        return secrets.token_urlsafe(12)

    def _stored_passwords(self) -> dict[str, str]:
        path = self.home / "passwords.json"
        stored = json.loads(path.read_text()) if path.exists() else {}
        return {name: stored.get(name) or secrets.token_urlsafe(12) for name in self.users}

    def _secret(self, name: str, factory) -> str:
        path = self.home / f".{name}"
        if not path.exists():
            path.write_text(factory())
            path.chmod(0o600)
        return path.read_text().strip()

    @property
    def db_url(self) -> str:
        if self.database == "sqlite":
            return f"sqlite:///{self.home / 'airflow.db'}"
        return PG_URL.format(db=self.database)

    def env(self) -> dict[str, str]:
        from cryptography.fernet import Fernet  # noqa: PLC0415

        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
        pythonpath = [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "PYTHONPATH": os.pathsep.join(pythonpath),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__FERNET_KEY": self._secret("fernet_key", lambda: Fernet.generate_key().decode()),
            # per-DAG authorization (docs/security.md): FAB, with the roles of sensitive_data.auth.roles;
            # FAB must not re-grant its built-in roles every DAG at start-up (roles.sync does the syncing)
            "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER,
            "AIRFLOW__FAB__UPDATE_FAB_PERMS": "False",
            # the harness logs many accounts in within seconds; production keeps FAB's rate limit
            "AIRFLOW__FAB__AUTH_RATE_LIMITED": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__CORE__PARALLELISM": "16",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__SECRET_KEY": self._secret("api_secret", lambda: secrets.token_urlsafe(32)),
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt_secret", lambda: secrets.token_urlsafe(32)),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "60",
            # a worker killed mid-task (tests/e2e/test_ega_faults.py) is noticed within about 35 s
            # rather than 5 minutes; the supervisors heartbeat every 5 s
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__SENSITIVE_DATA__RETRY_DELAY_SECONDS": "5",  # first retry delay (sensitive_data.common.retries)
        })
        if self.executor == "CeleryExecutor":
            redis_db = 1 + (abs(hash(str(self.home))) % 15)
            env.update({
                "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.db_url.replace("+psycopg2", ""),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "3600",
            })
        env.update(self.vars)
        env["SDP_LOCAL"] = str(self.local)
        env.update(self.extra_env)
        return env

    # ---------------------------------------------------------------- lifecycle
    def _run(self, argv: list[str], what: str, timeout: float = 600, env: Mapping[str, str] | None = None) -> str:
        res = subprocess.run(argv, env=dict(env or self.env()), cwd=ROOT, capture_output=True, text=True,
                             timeout=timeout)
        if res.returncode != 0:
            raise StackError(f"{what} failed (exit {res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        return res.stdout

    def start(self) -> AirflowStack:
        self.home.mkdir(parents=True, exist_ok=True)
        self.local.mkdir(parents=True, exist_ok=True)
        write_private(self.home / "passwords.json", json.dumps(self.passwords))
        if self.database != "sqlite":
            create_pg_database(self.database)
        logs = self.home / "logs" / "stack"
        try:
            names = with_needs(self.services)
            from devstack.procs import service_vars  # noqa: PLC0415

            self.vars = {**service_vars(names, fixed_ports=self.fixed_ports), "SDP_LOCAL": str(self.local)}
            for name in names:
                self.procs.append(start_service(
                    SERVICES[name], variables=self.vars, local=self.local, log_dir=logs, cwd=ROOT,
                    pid_dir=self.pid_dir,
                ))
            from devstack.registry import BOOTSTRAP  # noqa: PLC0415

            fmt = {**self.vars, "local": str(self.local), "python": sys.executable}
            for what, argv in BOOTSTRAP:
                self._run([part.format(**fmt) for part in argv], what)
            self._run([AIRFLOW, "db", "migrate"], "airflow db migrate")
            self.apply_settings()
            self.apply_roles()
            components = [("api-server", [AIRFLOW, "api-server", "--port", str(self.port), "--host", "127.0.0.1"]),
                          ("scheduler", [AIRFLOW, "scheduler"]),
                          ("dag-processor", [AIRFLOW, "dag-processor"]),
                          ("triggerer", [AIRFLOW, "triggerer"])]
            if self.executor == "CeleryExecutor":
                for i in range(1, self.workers + 1):
                    components.append((f"celery-worker-{i}", [
                        AIRFLOW, "celery", "worker", "--celery-hostname", f"worker{i}-{self.port}@%h",
                        "--skip-serve-logs", "--concurrency", "4"]))
            env = self.env()
            for name, argv in components:
                self.procs.append(spawn(f"airflow-{name}", argv, env=env, log_dir=logs, cwd=ROOT,
                                        pid_dir=self.pid_dir))
            api = next(p for p in self.procs if p.name == "airflow-api-server")
            from devstack.procs import wait_ready  # noqa: PLC0415

            wait_ready(api, self._healthy, 180, "healthy api-server")
        except BaseException:
            self.stop()
            raise
        return self

    def apply_settings(self) -> None:
        self._run([sys.executable, "-m", "devstack.settings", "apply"], "applying airflow_settings.yaml")

    def apply_roles(self) -> None:
        """The platform's roles (run as a program, like Airflow's own CLI), then the users, whose
        passwords go through a 0600 file: never on a command line."""
        roles = [sys.executable, "-m", "sensitive_data.auth.roles"]
        env = self.env()
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "plugins"), env["PYTHONPATH"]])
        users = self.home / "users.json"
        write_private(users, json.dumps({n: {"role": r, "password": self.passwords[n]} for n, r in self.users.items()}))
        try:
            self._run([*roles, "sync"], "syncing roles", env=env)
            self._run([*roles, "users", str(users)], "creating users", env=env)
        finally:
            users.unlink(missing_ok=True)

    def _healthy(self) -> bool:
        try:
            return self._client.get("/api/v2/monitor/health").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        stop_all(self.procs, grace=10)
        self.procs.clear()
        if self.pid_dir is not None:
            for pid_file in self.pid_dir.glob("*.pid"):
                pid_file.unlink(missing_ok=True)
        if not self.fixed_ports:  # the per-stack queues and databases the stand-ins' names gave the pipelines
            delete_amqp_names({v: n for v, n in self.vars.items() if v.endswith(("_QUEUE", "_EXCHANGE"))})
            for var, name in self.vars.items():
                if var.endswith("_DB") and name != "sqlite":
                    try:
                        drop_pg_database(name)
                    except Exception as exc:  # noqa: BLE001 - best effort at teardown, said plainly
                        print(f"warning: could not drop database {name}: {exc}", file=sys.stderr)
        if self.drop_database and self.database != "sqlite":
            try:
                drop_pg_database(self.database)
            except Exception as exc:  # noqa: BLE001 - best effort at teardown, said plainly
                print(f"warning: could not drop database {self.database}: {exc}", file=sys.stderr)
        self._client.close()

    def __enter__(self) -> AirflowStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- REST API
    def token_for(self, username: str) -> str:
        """A bearer token of one of ``users`` (cached)."""
        if username == self.username:
            return self.token
        if username not in self._tokens:
            self._tokens[username] = self.user_token(username, self.passwords[username])
        return self._tokens[username]

    def api_as(self, username: str, method: str, path: str, **kwargs) -> httpx.Response:
        """Call the REST API as ``username`` (one of ``users``)."""
        headers = {"Authorization": f"Bearer {self.token_for(username)}", **kwargs.pop("headers", {})}
        return self._client.request(method, path, headers=headers, **kwargs)

    def get_token(self, username: str | None = None, password: str | None = None) -> httpx.Response:
        return self._client.post("/auth/token", json={"username": username or self.username,
                                                      "password": password or self.password})

    @property
    def token(self) -> str:
        if self._token is None:
            resp = self.get_token()
            if resp.status_code not in (200, 201):
                raise StackError(f"POST /auth/token: {resp.status_code} {resp.text}")
            self._token = resp.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return self._client.request(method, path, headers=headers, **kwargs)

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 180) -> None:
        """Wait until the dag-processor has serialized every DAG in ``dag_ids``."""
        wanted = set(dag_ids)
        deadline = time.monotonic() + timeout
        found: set[str] = set()
        while time.monotonic() < deadline:
            resp = self.api("GET", "/api/v2/dags", params={"limit": 1000})
            if resp.status_code == 200:
                found = {d["dag_id"] for d in resp.json()["dags"]}
                if wanted <= found:
                    return
            time.sleep(1)
        errors = self.api("GET", "/api/v2/importErrors").json()
        raise StackError(f"DAGs not parsed after {timeout:.0f}s: {sorted(wanted - found)}; import errors: {errors}")

    def unpause(self, dag_id: str) -> None:
        resp = self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        if resp.status_code != 200:
            raise StackError(f"unpausing {dag_id}: {resp.status_code} {resp.text}")

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> httpx.Response:
        return self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                        json={"logical_date": None, "conf": dict(conf or {})})

    def wait(self, dag_id: str, run_id: str, timeout: float = 300) -> RunResult:
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            resp = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            if resp.status_code == 200:
                state = resp.json()["state"]
                if state in TERMINAL:
                    break
            time.sleep(1)
        else:
            tasks = self.task_states(dag_id, run_id)[0]
            raise StackError(f"{dag_id}/{run_id} still {state} after {timeout:.0f}s; tasks: {tasks}")
        tasks, tries = self.task_states(dag_id, run_id)
        return RunResult(self, dag_id, run_id, state, tasks, tries)

    def run(self, dag_id: str, conf: Mapping[str, Any] | None = None, timeout: float = 300) -> RunResult:
        """Unpause, trigger through the REST API and wait for the end of the run."""
        self.wait_for_dags([dag_id])
        self.unpause(dag_id)
        resp = self.trigger(dag_id, conf)
        if resp.status_code != 200:
            raise StackError(f"triggering {dag_id}: {resp.status_code} {resp.text}")
        return self.wait(dag_id, resp.json()["dag_run_id"], timeout)

    def task_states(self, dag_id: str, run_id: str) -> tuple[dict[str, str], dict[str, int]]:
        resp = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})
        resp.raise_for_status()
        states, tries = {}, {}
        for ti in resp.json()["task_instances"]:
            key = ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]"
            states[key] = ti["state"]
            tries[key] = max(ti.get("try_number") or 1, 1)
        return states, tries

    def task_log(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int = 1) -> str:
        resp = self.api(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true", "map_index": map_index}, headers={"Accept": "application/json"},
        )
        resp.raise_for_status()
        content = resp.json().get("content")
        if isinstance(content, list):
            lines = []
            for item in content:
                if isinstance(item, dict):
                    extras = {k: v for k, v in item.items() if k not in ("event", "timestamp", "level", "logger")}
                    lines.append(f"{item.get('level', '')} {item.get('event', '')} {extras if extras else ''}")
                else:
                    lines.append(str(item))
            return "\n".join(lines)
        return str(content)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        resp = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
                        params={"map_index": map_index, "deserialize": "true"})
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.json().get("value")

    def user_token(self, username: str, password: str) -> str:
        resp = self.get_token(username, password)
        if resp.status_code not in (200, 201):
            raise StackError(f"token for {username}: {resp.status_code} {resp.text}")
        return resp.json()["access_token"]
