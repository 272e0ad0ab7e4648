"""Attacks on the platform with real accounts (docs/security.md, "Platform"): another researcher, an
ordinary User, a Viewer, an Op, the clean-room analyst and the lab streamer's service account try to
read, change, clear and trigger a researcher's data stager run through ``/api/v2``; a Viewer reads
what it may and finds no secret; no process of the stack carries a secret on its command line.

Every refusal is checked twice: the status code, and (as Admin) that nothing changed.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.security.conftest import ACCOUNTS, ME, assert_no_secret

STAGER_DAGS = ("data_stager_transfer", "data_stager_streamer")
ZONE = "nl.ru.donders"
# everyone but Admin; the researcher who owns the run is attacked by all the others
ATTACKERS = ["researcher2", "user", "viewer", "op", "analyst", "streamer"]
REFUSED = (403, 404)
# what an account may see of the stager's DAGs: only the lab streamer's its own DAG
OWN_STAGER_DAG = {"streamer": {"data_stager_streamer"}}


def forbidden(attacker: str) -> set[str]:
    return {"data_stager_transfer", "data_stager_streamer"} - OWN_STAGER_DAG.get(attacker, set())


def _files(root: Path, n: int = 3) -> None:
    for i in range(n):
        (root / f"f{i}.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / f"f{i}.txt").write_text(f"data {i}\n")


@pytest.fixture(scope="module")
def stager_run(stack):
    """A finished data stager job of the researcher, submitted through /stager/v1 as that researcher
    (running as the researcher's own POSIX account, as the stager's account rules demand)."""
    from tests.e2e.test_stager import configure_stager, make_files, researcher_dir

    stack.wait_for_dags(STAGER_DAGS)
    for dag_id in STAGER_DAGS:
        stack.unpause(dag_id)
    cfg = configure_stager(stack)
    src = researcher_dir(stack, "sec-src")
    make_files(src, 3)
    doc = {"title": f"security {uuid.uuid4().hex[:6]}", "stagerUser": cfg["researcher"],
           "stagerUserEmail": "alice@example.org", "drUser": "alice", "drPass": "alice-secret",
           "srcURL": str(src), "dstURL": f"irods:/{ZONE}/home/alice/sec-{uuid.uuid4().hex[:8]}"}
    resp = stack.api_as(ME, "POST", "/stager/v1/job", json=doc)
    assert resp.status_code == 200, resp.text
    run_id = resp.json()["id"]
    result = stack.wait("data_stager_transfer", run_id, timeout=300)
    assert result.state == "success", result
    tasks = sorted(result.tasks)
    return {"dag_id": "data_stager_transfer", "run_id": run_id, "tasks": tasks, "result": result}


def _snapshot(stack, run) -> dict:
    """What an attack must not change, as Admin sees it."""
    base = f"/api/v2/dags/{run['dag_id']}/dagRuns"
    one = stack.api("GET", f"{base}/{run['run_id']}").json()
    tis = stack.api("GET", f"{base}/{run['run_id']}/taskInstances").json()["task_instances"]
    runs = stack.api("GET", base, params={"limit": 1000}).json()["total_entries"]
    return {"state": one["state"], "conf": one["conf"], "runs": runs,
            "tis": sorted((t["task_id"], t["map_index"], t["state"], t["try_number"]) for t in tis)}


@pytest.mark.parametrize("attacker", ATTACKERS)
def test_nobody_but_admin_reads_a_stager_run_through_the_api(stack, stager_run, as_, attacker):
    who = as_(attacker)
    dag, run = stager_run["dag_id"], stager_run["run_id"]
    base = f"/api/v2/dags/{dag}/dagRuns/{run}"
    for path in (f"/api/v2/dags/{dag}", f"/api/v2/dags/{dag}/details", f"/api/v2/dags/{dag}/dagRuns",
                 base, f"{base}/taskInstances", f"/api/v2/dags/{dag}/tasks",
                 f"/api/v2/eventLogs?dag_id={dag}"):
        resp = who.get(path)
        assert resp.status_code in REFUSED, f"{attacker} GET {path}: {resp.status_code} {resp.text[:300]}"
    for task in stager_run["tasks"]:
        task_id = task.split("[")[0]
        for path in (f"{base}/taskInstances/{task_id}",  # rendered fields
                     f"{base}/taskInstances/{task_id}/logs/1",
                     f"{base}/taskInstances/{task_id}/xcomEntries",
                     f"{base}/taskInstances/{task_id}/xcomEntries/return_value"):
            resp = who.get(path)
            assert resp.status_code in REFUSED, f"{attacker} GET {path}: {resp.status_code} {resp.text[:300]}"
    # the wildcard and batch endpoints list nothing of the stager DAGs (the streamer: only its own)
    hidden = forbidden(attacker)
    listed = who.get("/api/v2/dags/~/dagRuns", params={"limit": 1000})
    assert listed.status_code in (200, *REFUSED)
    if listed.status_code == 200:
        assert not {r["dag_id"] for r in listed.json()["dag_runs"]} & hidden, attacker
        assert run not in listed.text
    batch = who.post("/api/v2/dags/~/dagRuns/list", json={"dag_ids": sorted(hidden), "page_limit": 100})
    assert batch.status_code in REFUSED or not batch.json()["dag_runs"], f"{attacker}: {batch.text[:300]}"
    tis = who.get("/api/v2/dags/~/dagRuns/~/taskInstances", params={"limit": 1000})
    assert tis.status_code in REFUSED or not {t["dag_id"] for t in tis.json()["task_instances"]} & hidden
    xcoms = who.get("/api/v2/dags/~/dagRuns/~/taskInstances/~/xcomEntries", params={"limit": 1000})
    assert xcoms.status_code in REFUSED or not {x["dag_id"] for x in xcoms.json()["xcom_entries"]} & hidden
    dags = who.get("/api/v2/dags", params={"limit": 1000})
    assert dags.status_code in REFUSED or not {d["dag_id"] for d in dags.json()["dags"]} & hidden


@pytest.mark.parametrize("attacker", ATTACKERS)
def test_nobody_but_admin_changes_clears_or_triggers_stager_runs(stack, stager_run, as_, attacker):
    who = as_(attacker)
    dag, run = stager_run["dag_id"], stager_run["run_id"]
    before = _snapshot(stack, stager_run)
    task_id = stager_run["tasks"][0].split("[")[0]
    attempts = [
        ("PATCH", f"/api/v2/dags/{dag}/dagRuns/{run}", {"json": {"state": "failed"}}),
        ("PATCH", f"/api/v2/dags/{dag}/dagRuns/{run}", {"json": {"note": "mine now"}}),
        ("POST", f"/api/v2/dags/{dag}/clearTaskInstances",
         {"json": {"dag_run_id": run, "dry_run": False, "only_failed": False, "reset_dag_runs": True}}),
        ("POST", f"/api/v2/dags/{dag}/dagRuns/{run}/clear", {"json": {"dry_run": False}}),
        ("PATCH", f"/api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task_id}", {"json": {"new_state": "failed"}}),
        ("PATCH", f"/api/v2/dags/{dag}", {"json": {"is_paused": True}}),
        ("DELETE", f"/api/v2/dags/{dag}/dagRuns/{run}", {}),
    ]
    for d in STAGER_DAGS:
        attempts.append(("POST", f"/api/v2/dags/{d}/dagRuns",
                         {"json": {"logical_date": None, "conf": {"stagerUser": "root", "drUser": "alice"}}}))
    for method, path, kw in attempts:
        resp = who.request(method, path, **kw)
        if attacker == "streamer" and method == "POST" and path.endswith("data_stager_streamer/dagRuns"):
            # the lab streamer's account may trigger its own DAG: the conf is checked where the work
            # runs (docs/security.md, "Stager"); here only that it cannot touch the transfer run
            continue
        assert resp.status_code in REFUSED, f"{attacker} {method} {path}: {resp.status_code} {resp.text[:300]}"
    assert _snapshot(stack, stager_run) == before, f"{attacker} changed the run"
    dag_state = stack.api("GET", f"/api/v2/dags/{dag}").json()
    assert dag_state["is_paused"] is False


def test_admin_keeps_full_access(stack, stager_run):
    run = stager_run["run_id"]
    assert stack.api("GET", f"/api/v2/dags/data_stager_transfer/dagRuns/{run}").status_code == 200
    assert stack.api("GET", "/api/v2/eventLogs", params={"limit": 1}).status_code == 200


def test_roles_are_as_documented(stack, as_):
    """Which pipelines each account sees (docs/security.md, "Roles")."""
    stack.wait_for_dags(["hpcs_data_preparation", "platform_healthcheck", *STAGER_DAGS])
    seen = {key: {d["dag_id"] for d in as_(key).get("/api/v2/dags", params={"limit": 1000}).json()["dags"]}
            for key in ACCOUNTS}
    everything = seen["admin"]
    staff = everything - set(STAGER_DAGS)
    assert set(STAGER_DAGS) <= everything
    assert seen["viewer"] == seen["user"] == seen["op"] == staff
    assert seen["researcher"] == seen["researcher2"] == {"hpcs_data_preparation"}
    assert seen["analyst"] == {d for d in everything if d.startswith("cleanroom_")}
    assert seen["streamer"] == {"data_stager_streamer"}
    # a Viewer cannot trigger, a User can (a pipeline it may run)
    assert as_("viewer").post("/api/v2/dags/platform_healthcheck/dagRuns",
                              json={"logical_date": None}).status_code == 403
    # only Admin reads the event log (it records what callers sent)
    for key in ("viewer", "user", "op", "researcher"):
        assert as_(key).get("/api/v2/eventLogs").status_code == 403, key
    # connections: Op manages them, the API never returns a password
    assert as_("user").get("/api/v2/connections").status_code == 403
    conns = as_("op").get("/api/v2/connections", params={"limit": 1000})
    assert conns.status_code == 200


@pytest.fixture(scope="module")
def healthcheck_run(stack):
    """A run of platform_healthcheck (it uses every connection's credentials) while the stack's
    command lines are sampled."""
    sampler = CmdlineSampler(stack)
    sampler.start()
    try:
        result = stack.run("platform_healthcheck", timeout=300)
    finally:
        sampler.stop()
    return result, sampler


def test_viewer_reads_no_secret(stack, healthcheck_run, as_, configured_secrets):
    result, _ = healthcheck_run
    viewer = as_("viewer")
    base = f"/api/v2/dags/platform_healthcheck/dagRuns/{result.run_id}"
    run = viewer.get(base)
    assert run.status_code == 200
    assert_no_secret(run.text, configured_secrets, "the run as the Viewer reads it")
    tis = viewer.get(f"{base}/taskInstances", params={"limit": 1000})
    assert tis.status_code == 200 and tis.json()["task_instances"]
    assert_no_secret(tis.text, configured_secrets, "task instances (rendered fields)")
    read = 0
    for ti in tis.json()["task_instances"]:
        path = f"{base}/taskInstances/{ti['task_id']}"
        params = {"map_index": ti["map_index"]}
        one = viewer.get(path + (f"/{ti['map_index']}" if ti["map_index"] >= 0 else ""))
        assert_no_secret(one.text, configured_secrets, f"{ti['task_id']} rendered fields")
        log = viewer.get(f"{path}/logs/{max(ti['try_number'], 1)}", params={**params, "full_content": "true"},
                         headers={"Accept": "application/json"})
        assert log.status_code == 200, log.text
        assert_no_secret(log.text, configured_secrets, f"{ti['task_id']} log")
        xcom = viewer.get(f"{path}/xcomEntries", params=params)
        assert xcom.status_code == 200
        for entry in xcom.json()["xcom_entries"]:
            value = viewer.get(f"{path}/xcomEntries/{entry['key']}", params={**params, "deserialize": "true"})
            assert value.status_code == 200
            assert_no_secret(value.text, configured_secrets, f"{ti['task_id']} XCom {entry['key']}")
        read += 1
    assert read >= 3
    assert viewer.get("/api/v2/eventLogs", params={"dag_id": "platform_healthcheck"}).status_code == 403
    # what the Admin's event log recorded about this run holds no secret either
    events = stack.api("GET", "/api/v2/eventLogs", params={"dag_id": "platform_healthcheck", "limit": 1000})
    assert events.status_code == 200
    assert_no_secret(events.text, configured_secrets, "event log of platform_healthcheck")
    variables = viewer.get("/api/v2/variables")
    assert variables.status_code == 403


# ------------------------------------------------------------------ no secret on a command line
_URL_CREDENTIAL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)


def _session(pid: str) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[3])  # fields after "(comm)": state ppid pgrp session


class CmdlineSampler:
    """Collects the command lines of every process of the stack: the sessions of the processes it
    started (Airflow components, stand-ins, their children) and any process whose environment is the
    stack's (the SPIRE agents that HPCS runs start in sessions of their own, Spark submissions)."""

    def __init__(self, stack):
        self.stack = stack
        self.marks = (f"AIRFLOW_HOME={stack.home}\0".encode(), f"SDP_LOCAL={stack.local}\0".encode())
        self.seen: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        sessions = {p.pid for p in self.stack.procs}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if not raw:
                continue
            argv = raw.rstrip(b"\0").decode(errors="replace").replace("\0", " ")
            if argv in self.seen:
                continue
            if _session(pid) in sessions or self._ours(pid):
                self.seen[argv] = pid

    def _ours(self, pid: str) -> bool:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes() + b"\0"
        except OSError:
            return False
        return any(mark in env for mark in self.marks)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(0.3)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sample()


def test_no_secret_on_any_command_line(stack, healthcheck_run, configured_secrets):
    _, sampler = healthcheck_run
    # an HPCS run too: its SPIRE agent lives between setup and teardown
    hpcs_sampler = CmdlineSampler(stack)
    staging = Path(stack.vars["SDP_LOCAL"]) / "staging" / f"argv-{uuid.uuid4().hex[:6]}"
    _files(staging)
    hpcs_sampler.start()
    try:
        result = stack.run("hpcs_data_preparation", conf={
            "input_path": staging.name, "users": ["root"], "compute_nodes": ["cn01"],
            "path_at_rest": f"/project/{staging.name}"}, timeout=300)
    finally:
        hpcs_sampler.stop()
    assert result.state == "success", result.explain()
    seen = {**sampler.seen, **hpcs_sampler.seen}
    names = " ".join(seen)
    # Airflow renames its processes ("airflow api_server -- host:...", "airflow worker -- ...")
    for expected in ("api[-_]server", "scheduler", "dag[-_]processor", "triggerer", "devstack[.]vault",
                     "devstack[.]cleanroom_governance", "devstack[.]k8s_spark", "devstack[.]cega",
                     "spire agent run"):
        assert re.search(expected, names), f"no process matching {expected!r} was sampled"
    for argv, pid in seen.items():
        assert_no_secret(argv, configured_secrets, f"command line of pid {pid} ({argv[:80]}...)")
        assert not _URL_CREDENTIAL.search(argv), f"a URL with credentials on the command line of pid {pid}"
    assert json.dumps(sorted(seen)).count("-joinToken") == 0
