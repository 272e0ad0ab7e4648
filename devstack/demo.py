"""``make demo``: bring the local stack up and run each pipeline end to end through the REST API."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from devstack.airflow_stack import AirflowStack, RunResult
from devstack.cleanroom_sample import Owner, make_sources, owners_setup
from devstack.procs import StackError
from devstack.stack import print_access, up

DemoStep = Callable[[AirflowStack], bool]
ROOT = Path(__file__).resolve().parents[1]


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


DEMO = ROOT / ".local" / "demo"
CRYPT4GH = str(Path(sys.executable).with_name("crypt4gh"))
CRYPT4GH_KEYGEN = str(Path(sys.executable).with_name("crypt4gh-keygen"))


def _wait(what: str, check, timeout: float = 180, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")


def ega(stack: AirflowStack) -> bool:
    """Encrypt sample files with the crypt4gh CLI for the node's key, have Central EGA (the
    stand-in) ask for them, let the pipeline take them to ready, print status and accession."""
    local = Path(stack.vars["SDP_LOCAL"])
    node_pk = local / "lega" / "keys" / "lega.pub"
    user = "demo-submitter"
    work = DEMO / "ega"
    work.mkdir(parents=True, exist_ok=True)
    sender_sk, sender_pk = work / "submitter.sec", work / "submitter.pub"
    if not sender_sk.exists():
        subprocess.run([CRYPT4GH_KEYGEN, "--sk", str(sender_sk), "--pk", str(sender_pk), "--nocrypt", "-f"],
                       check=True, capture_output=True)
    run_tag = time.strftime("%Y%m%dT%H%M%S")
    samples = {f"{run_tag}/reads-{i}.txt.c4gh": os.urandom(64 * 1024 * i + 17) for i in range(3)}
    inbox = local / "lega" / "inbox" / user
    for filepath, plaintext in samples.items():
        target = inbox / filepath
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            subprocess.run([CRYPT4GH, "encrypt", "--sk", str(sender_sk), "--recipient_pk", str(node_pk)],
                           input=plaintext, stdout=out, check=True)
    cega = f"http://127.0.0.1:{stack.vars['SDP_CEGA_PORT']}"
    print(f"\n== EGA ingestion: {len(samples)} files encrypted with the crypt4gh CLI into {inbox}")
    for filepath in samples:
        httpx.post(f"{cega}/trigger", json={"user": user, "filepath": filepath}, timeout=30).raise_for_status()
    print("   Central EGA (stand-in) sent one ingest message per file; running ega_ingest through the REST API")
    result = stack.run("ega_ingest", timeout=600)
    print_run("EGA ingestion", result)

    def completed():
        done = httpx.get(f"{cega}/messages", params={"routing_key": "files.completed", "user": user},
                         timeout=30).json()
        paths = {m["body"]["filepath"] for m in done if isinstance(m.get("body"), dict)}
        return paths >= set(samples)

    try:
        _wait("files.completed for every sample", completed, timeout=300)
    except StackError as exc:
        print(f"   {exc}")
    import psycopg2  # noqa: PLC0415

    dbname = stack.vars.get("SDP_LEGA_DB", "lega")
    with psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=dbname) as db, db.cursor() as cur:
        cur.execute("SELECT filepath, status, accession_id FROM files WHERE submission_user = %s "
                    "AND filepath LIKE %s ORDER BY filepath", (user, f"{run_tag}/%"))
        rows = cur.fetchall()
    print(f"   {'file':<34} {'status':<10} accession")
    for filepath, status, accession in rows:
        print(f"   {filepath:<34} {status:<10} {accession or '-'}")
    return len(rows) == len(samples) and all(status == "ready" for _, status, _ in rows)


DEMO_RESEARCHER = "sdp-researcher"


def _stager_user(stack: AirflowStack, tree: Path) -> str:
    """The researcher the demo job runs as: transfers never run as root or a system account
    (docs/stager.md "Trust"). As root: a regular account created for the demo, owning the demo
    files; otherwise the current user. Either is allow-listed explicitly in ``stager_settings``."""
    import json
    import shutil

    user = pwd.getpwuid(os.geteuid()).pw_name
    settings_patch: dict = {}
    if os.geteuid() == 0:
        user = DEMO_RESEARCHER
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", user], check=True)
        pw = pwd.getpwnam(user)
        for path in [tree, *tree.rglob("*")]:
            os.lchown(path, pw.pw_uid, pw.pw_gid)
        for parent in tree.parents:  # the researcher must reach the tree
            if parent == ROOT.parent:
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o005)
        if shutil.which("python3") and os.path.realpath(sys.executable).startswith("/root/"):
            settings_patch["runner_python"] = "/usr/bin/python3"  # the venv's interpreter is under /root
    current = json.loads(stack.api("GET", "/api/v2/variables/stager_settings").json()["value"])
    allowed = current.get("allowed_users") or []
    if isinstance(allowed, str):
        allowed = [u.strip() for u in allowed.split(",") if u.strip()]
    current["allowed_users"] = sorted({*allowed, user})
    current.update(settings_patch)
    stack.api("PATCH", "/api/v2/variables/stager_settings",
              json={"key": "stager_settings", "value": json.dumps(current)}).raise_for_status()
    return user


def stager(stack: AirflowStack) -> bool:
    """Submit a transfer job through the stager API (POSIX -> iRODS) and follow it to the end."""
    src = DEMO / "stager" / "session-01"
    for i in range(20):
        path = src / f"run-{i % 4}" / f"scan {i:02d}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_bytes(os.urandom(32 * 1024))
    (src / "notes").mkdir(exist_ok=True)
    me = _stager_user(stack, src)
    collection = f"irods:/nl.ru.donders/home/alice/demo-{time.strftime('%Y%m%dT%H%M%S')}"
    job = {"title": "demo: MRI session 01", "stagerUser": me, "stagerUserEmail": "alice@example.org",
           "drUser": "alice", "drPass": "alice-secret", "srcURL": str(src), "dstURL": collection}
    print(f"\n== Data stager: POST /stager/v1/job  {src} -> {collection}")
    resp = stack.api("POST", "/stager/v1/job", json=job)
    if resp.status_code != 200:
        print(f"   refused: {resp.status_code} {resp.text}")
        return False
    job_id = resp.json()["id"]
    body = _wait(f"job {job_id}", lambda: (lambda b: b if b["state"] in ("completed", "archived") else None)(
        stack.api("GET", f"/stager/v1/job/{job_id}").json()), timeout=300)
    print(f"   job {job_id}: state={body['state']} attempts={body.get('attempts')} "
          f"progress={body.get('progress')} error={body.get('last_error') or body.get('error') or '-'}")
    return body["state"] == "completed"


def hpcs(stack: AirflowStack) -> bool:
    """Prepare a sample directory in the staging area, ship it to the supercomputer, print the info file."""
    local = Path(stack.vars["SDP_LOCAL"])
    name = f"demo-{time.strftime('%Y%m%dT%H%M%S')}"
    source = local / "staging" / name
    for i in range(12):
        path = source / f"sample-{i % 3}" / f"part-{i:02d}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{i},{j},{j * j}\n" for j in range(2000)))
    (source / "empty").mkdir(exist_ok=True)
    me = pwd.getpwuid(os.geteuid()).pw_name
    conf = {"input_path": name, "users": [me], "groups": [], "compute_nodes": ["cn01", "cn02"],
            "path_at_rest": f"/project/{name}"}
    print(f"\n== HPCS secure data preparation: {source} -> supercomputer:{conf['path_at_rest']}")
    result = stack.run("hpcs_data_preparation", conf=conf, timeout=600)
    print_run("HPCS data preparation", result)
    if result.state != "success":
        print(result.explain())
        return False
    info = local / "supercomputer_sftp" / "root" / "project" / name / f"{name}.info.yaml"
    print(f"   info file on the supercomputer ({info.relative_to(local)}):")
    for line in info.read_text().splitlines():
        print(f"     {line}")
    return True


def cleanroom(stack: AirflowStack) -> bool:
    """Two hospitals and an analyst: the analyst proposes the contract, each hospital accepts it and
    keeps its analysis rules and auto-approval policy in governance (with its own credentials); the
    platform seals and publishes through the hospitals' automation, the query is approved by their
    policies and runs in the attested clean room."""
    local = Path(stack.vars["SDP_LOCAL"])
    cgs_url = f"http://127.0.0.1:{stack.vars['SDP_CGS_PORT']}"
    make_sources(local / "cleanroom" / "staging")
    stamp = time.strftime("%Y%m%dT%H%M%S").lower()
    ids = {"contract_id": f"demo-{stamp}", "document_id": f"visits-{stamp}"}
    print(f"\n== Confidential clean room: contract {ids['contract_id']}, query {ids['document_id']}")
    stack.wait_for_dags(["cleanroom_create"])
    stack.unpause("cleanroom_create")
    resp = stack.trigger("cleanroom_create", {"contract_id": ids["contract_id"]})
    if resp.status_code != 200:
        raise StackError(f"triggering cleanroom_create: {resp.status_code} {resp.text}")
    for member in ("hospital_a", "hospital_b"):  # each hospital votes with its own client
        Owner(cgs_url, member).accept_contract(ids["contract_id"])
    result = stack.wait("cleanroom_create", resp.json()["dag_run_id"], timeout=240)
    print_run("cleanroom_create", result)
    if result.state != "success":
        print(result.explain())
        return False
    owners_setup(cgs_url, ids["contract_id"])
    print("   hospital_a, hospital_b: analysis rules (identity patient_id, k=5) and auto-approval policies registered")
    for dag_id, timeout in (("cleanroom_prepare", 240), ("cleanroom_run", 420)):
        result = stack.run(dag_id, conf=ids, timeout=timeout)
        print_run(dag_id, result)
        if result.state != "success":
            print(result.explain())
            return False
    summary = result.xcom("collect_result")
    print(f"   result ({summary['rows']} groups, {summary['suppressed_groups']} suppressed below k): "
          f"{summary['result_path']}")
    for line in Path(summary["result_path"]).read_text().splitlines():
        print(f"     {line}")
    return True


STEPS: list[tuple[str, DemoStep]] = [
    ("platform health check", healthcheck),
    ("EGA ingestion", ega),
    ("HPCS secure data preparation", hpcs),
    ("data stager transfer", stager),
    ("confidential clean room", cleanroom),
]


def main() -> int:
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
