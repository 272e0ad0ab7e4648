"""python-irodsclient's own test modules (``irods.test``, shipped inside the installed package) against the
iRODS stand-in.

Each module runs in its own pytest process against a fresh stand-in (zone ``tempZone``, the admin
``rods``/``rods`` and the resource ``demoResc``, as the suite expects of a fresh iRODS), found through an
``irods_environment.json`` and an ``.irodsA`` written for it (the suite's ``helpers.make_session`` reads
``IRODS_ENVIRONMENT_FILE`` / ``IRODS_AUTHENTICATION_FILE``). A module passes when every test not listed
in ``EXCLUDED`` passes (the suite's own skips, for example of SSL or ``/irods_shared`` tests, stay skips
and are not counted as passes).

``EXCLUDED`` lists each test left out, with the reason: what one stand-in server cannot have (a second
resource or a resource hierarchy, the iCAT's SQL for specific queries, the rule engine) or what does not
fit the few minutes this runs in on two cores.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]

RESOURCES = "needs resources other than demoResc (a resource hierarchy, replicas on a second resource)"
SPECIFIC_QUERY = "needs specific queries: SQL run on the iCAT database, which the stand-in does not have"
RULES = "needs the rule engine (delayed rules in the catalog)"
BIG = "moves a 4 GiB object in parallel threads: beyond this run's time budget on two cores"

EXCLUDED: dict[str, dict[str, str]] = {
    "collection_test": {},
    "access_test": {},
    "meta_test": {
        "test_atomic_metadata_operation_for_resource_244": RESOURCES,
        "test_atomic_metadata_operations_255": RESOURCES,
        "test_replica_truncate_json_error__issue_606": RESOURCES,
    },
    "query_test": {
        "test_rules_query__267": RULES,
        "test_list_specific_queries": SPECIFIC_QUERY,
        "test_list_specific_queries_with_arguments": SPECIFIC_QUERY,
        "test_list_specific_queries_with_unknown_alias": SPECIFIC_QUERY,
        "test_query_data_name_and_id": SPECIFIC_QUERY,
        "test_query_data_name_and_id_no_columns": SPECIFIC_QUERY,
        "test_register_query_twice": SPECIFIC_QUERY,
    },
    "data_obj_test": {
        "test_access_through_resc_hierarchy__243": RESOURCES,
        "test_acls_are_uniquely_listed_for_replicated_data_objects__issue_557": RESOURCES,
        "test_compute_chksum": RESOURCES,
        "test_data_open_on_leaf_is_disallowed__243": RESOURCES,
        "test_data_open_on_named_resource__243": RESOURCES,
        "test_data_write_stales_other_repls__ref_irods_5548": RESOURCES,
        "test_get_data_objects": RESOURCES,
        "test_get_replica_size": RESOURCES,
        "test_obj_create_to_default_resource": RESOURCES,
        "test_obj_put_and_return_data_object": RESOURCES,
        "test_obj_put_to_default_resource": RESOURCES,
        "test_obj_put_to_default_resource_from_env_file": RESOURCES,
        "test_obj_replicate": RESOURCES,
        "test_open_existing_dataobj_in_resource_hierarchy__232": RESOURCES,
        "test_parallel_conns_to_repl_with_cousin__irods_5848": RESOURCES,
        "test_parallel_conns_with_replResc__irods_5848": RESOURCES,
        "test_put_get_parallel_autoswitch_A__235": RESOURCES,
        "test_repave_replicas": RESOURCES,
        "test_replica_number": RESOURCES,
        "test_replica_truncate__issue_534": RESOURCES,
        "test_replica_truncate_related_errors__issue_534": RESOURCES,
        "test_set_and_access_data_comments__issue_450": RESOURCES,
        "test_verify_chksum__282_287": RESOURCES,
        "test_with_session_cloned_in_core_that_replicate_obeys_default_resource_setting__issue_459": RESOURCES,
        "test_with_session_spawned_from_client_environment_that_replicate_obeys_default_resource_setting__issue_459": RESOURCES,
        "test_handling_of_termination_signals_during_multithread_get__issue_722": BIG,
        "test_handling_of_termination_signals_during_multithread_put__issue_722": BIG,
    },
}
# the fewest passes each module must report (what it passes today), so that a run collecting nothing fails
MIN_PASSED = {"collection_test": 21, "access_test": 14, "meta_test": 26, "query_test": 29, "data_obj_test": 39}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _obfuscate(password: str) -> str:
    from irods.password_obfuscation import encode  # the client's .irodsA format

    return encode(password)


@pytest.fixture
def standin(tmp_path):
    port = _free_port()
    state = tmp_path / "state"
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"users": {"rods": {"password": "rods", "type": "rodsadmin"}}, "acls": {}}))
    log = open(tmp_path / "standin.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "devstack.irods", "--port", str(port), "--state-dir", str(state),
                             "--zone", "tempZone", "--users-file", str(users)], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the iRODS stand-in did not start: {(tmp_path / 'standin.log').read_text()}")
            time.sleep(0.1)
    home = tmp_path / "home"
    (home / ".irods").mkdir(parents=True)
    env_file = home / ".irods" / "irods_environment.json"
    env_file.write_text(json.dumps({"irods_host": "127.0.0.1", "irods_port": port, "irods_user_name": "rods",
                                    "irods_zone_name": "tempZone", "irods_default_resource": "demoResc"}))
    auth = home / ".irods" / ".irodsA"
    auth.write_text(_obfuscate("rods"))
    auth.chmod(0o600)
    yield {"HOME": str(home), "IRODS_ENVIRONMENT_FILE": str(env_file), "IRODS_AUTHENTICATION_FILE": str(auth)}
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.mark.parametrize("module", sorted(EXCLUDED))
def test_python_irodsclient_suite(module, standin, tmp_path):
    excluded = EXCLUDED[module]
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--timeout", "120",
            "-rfE", "--pyargs", f"irods.test.{module}"]
    if excluded:
        args += ["-k", "not (" + " or ".join(sorted(excluded)) + ")"]
    env = {**os.environ, **standin, "PYTHONPATH": ""}
    run = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    tail = "\n".join(run.stdout.splitlines()[-40:])
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|errors?|skipped)", run.stdout.splitlines()[-1])}
    print(f"irods.test.{module}: {counts}, excluded {len(excluded)}")
    assert run.returncode == 0, f"irods.test.{module} failed against the stand-in:\n{tail}\n{run.stderr[-2000:]}"
    assert counts.get("passed", 0) >= MIN_PASSED[module], tail
