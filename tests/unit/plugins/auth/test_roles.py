"""The platform's roles (plugins/sensitive_data/auth/roles.py, docs/security.md "Roles")."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from sensitive_data.auth import roles

ROOT = Path(__file__).resolve().parents[4]


def dag_ids() -> set[str]:
    """The ids of every DAG in dags/, as Airflow parses them (ids may be constants of the domain)."""
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"), safe_mode=False)
    assert bag.import_errors == {}
    return set(bag.dag_ids)


def test_every_dag_has_a_policy_and_no_policy_names_a_missing_dag():
    assert dag_ids() == set(roles.PIPELINES), "add the new DAG to sensitive_data.auth.roles.PIPELINES"


def test_stager_dags_are_admin_only_but_for_the_streamer_account():
    assert roles.PIPELINES["data_stager_transfer"] == {}
    assert set(roles.PIPELINES["data_stager_streamer"]) == {"StagerService"}
    for dag_id, by_role in roles.PIPELINES.items():
        if not dag_id.startswith("data_stager_"):
            assert "Researcher" not in by_role or dag_id == "hpcs_data_preparation"


class Perm:
    def __init__(self, action, resource):
        self.action = SimpleNamespace(name=action)
        self.resource = SimpleNamespace(name=resource)

    def __eq__(self, other):
        return (self.action.name, self.resource.name) == (other.action.name, other.resource.name)

    def __hash__(self):
        return hash((self.action.name, self.resource.name))


class FakeSecurityManager:
    """Just enough of FAB's security manager: roles holding permissions."""

    def __init__(self):
        self.roles = {}
        self.synced = False

    def sync_roles(self):
        for name in ("Viewer", "User", "Op"):  # FAB's built-in grant of every DAG, at every sync
            self.add_role(name).permissions.extend([Perm("can_read", "DAGs"), Perm("can_edit", "DAGs")])
        if not self.synced:
            self.roles["User"].permissions.append(Perm("can_read", "DAG:stale"))  # a UI edit
        self.synced = True

    def find_role(self, name):
        return self.roles.get(name)

    def add_role(self, name):
        return self.roles.setdefault(name, SimpleNamespace(name=name, permissions=[]))

    def get_permission(self, action, resource):
        return Perm(action, resource)

    create_permission = get_permission

    def add_permission_to_role(self, role, perm):
        role.permissions.append(perm)

    def remove_permission_from_role(self, role, perm):
        role.permissions.remove(perm)


def test_sync_removes_the_global_dag_grant_and_sets_exactly_the_policy():
    sm = FakeSecurityManager()
    changes = roles.sync(sm)
    assert sm.synced and changes
    held = {name: {(p.action.name, p.resource.name) for p in role.permissions} for name, role in sm.roles.items()}
    for name in ("Viewer", "User", "Op", *roles.CUSTOM_ROLES):
        assert not [a for a, r in held[name] if r == "DAGs" and a in ("can_read", "can_edit", "can_delete")]
        assert not [r for _, r in held[name] if "data_stager_transfer" in r]
    assert ("can_read", "DAG:stale") not in held["User"]
    assert ("can_create", "DAG Run:hpcs_data_preparation") in held["Researcher"]
    assert ("can_edit", "DAG:hpcs_data_preparation") in held["Researcher"]
    assert not [r for _, r in held["Researcher"] if r.startswith("DAG:") and r != "DAG:hpcs_data_preparation"]
    assert ("can_read", "DAG:ega_ingest") in held["Viewer"] and ("can_edit", "DAG:ega_ingest") not in held["Viewer"]
    assert ("can_create", "DAG Run:data_stager_streamer") in held["StagerService"]
    # FAB re-grants its built-ins whenever it syncs; the second sync takes exactly those away again
    assert sorted(roles.sync(sm)) == sorted(f"- {n}: {a} on DAGs" for n in ("Viewer", "User", "Op")
                                            for a in ("can_read", "can_edit"))


def test_users_file_must_be_private_and_complete(tmp_path):
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"alice": {"role": "Researcher", "password": "pw-123456"}}))
    os.chmod(path, 0o644)
    with pytest.raises(SystemExit, match="chmod 600"):
        roles._read_users(path)
    os.chmod(path, 0o600)
    assert roles._read_users(path)["alice"]["role"] == "Researcher"
    path.write_text(json.dumps({"alice": {"role": "Researcher"}}))
    with pytest.raises(SystemExit, match="needs a role and a password"):
        roles._read_users(path)
