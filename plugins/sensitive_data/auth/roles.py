"""The roles of this platform and who may touch which pipeline, applied to the FAB auth manager.

Airflow's FAB auth manager grants its built-in roles ``Viewer``, ``User`` and ``Op`` every DAG
(the global ``DAGs`` resource). Here nobody but ``Admin`` holds that global grant: each role gets
per-DAG permissions (``DAG:<dag_id>``, ``DAG Run:<dag_id>``) from ``PIPELINES`` below, and a DAG
that is not listed there is visible to ``Admin`` only (default deny). The data stager's DAGs are
listed with no role at all: researchers use ``/stager/v1``, which creates the runs itself.

Because FAB re-adds its built-in grants whenever it syncs roles, the deployment sets
``[fab] update_fab_perms = False`` and runs ``sync`` instead (after ``airflow db migrate``, and
again after any ``airflow sync-perm``)::

    python -m sensitive_data.auth.roles sync
    python -m sensitive_data.auth.roles users USERS_JSON   # {"name": {"role": "...", "password": "..."}}

Passwords are read from a file (0600) or, for ``admin``, from ``$AIRFLOW_ADMIN_PASSWORD``: never argv.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

DAGS, DAG_RUNS = "DAGs", "DAG Runs"
READ = {DAGS: {"can_read"}, DAG_RUNS: {"can_read"}}
TRIGGER = {DAGS: {"can_read", "can_edit"}, DAG_RUNS: {"can_read", "can_create"}}
MANAGE = {DAGS: {"can_read", "can_edit", "can_delete"}, DAG_RUNS: {"can_read", "can_create", "can_delete"}}
STAFF = {"Viewer": READ, "User": MANAGE, "Op": MANAGE}

# Roles of this platform beyond FAB's Admin/Op/User/Viewer (docs/security.md, "Actors").
CUSTOM_ROLES = ("Researcher", "CleanRoomAnalyst", "StagerService")

# dag_id -> role -> resource -> actions. Admin always has everything; a role not named has nothing.
PIPELINES: dict[str, dict[str, dict[str, set[str]]]] = {
    "ega_ingest": dict(STAFF),
    "ega_ingest_events": dict(STAFF),
    "ega_ingest_file": dict(STAFF),
    "platform_healthcheck": dict(STAFF),
    # a researcher prepares their own data for the supercomputer; the task checks that only the
    # first preparer of a secret_name may touch it again (include/hpcs/ownership.py)
    "hpcs_data_preparation": {**STAFF, "Researcher": TRIGGER},
    # the analyst proposes the contract, uploads, runs approved queries; data owners vote in governance
    "cleanroom_create": {**STAFF, "CleanRoomAnalyst": TRIGGER},
    "cleanroom_prepare": {**STAFF, "CleanRoomAnalyst": TRIGGER},
    "cleanroom_run": {**STAFF, "CleanRoomAnalyst": TRIGGER},
    # the data stager: Admin only through /api/v2; researchers go through /stager/v1, the lab
    # streamer's service account triggers its own DAG (which hands the job to the transfer DAG)
    "data_stager_transfer": {},
    "data_stager_streamer": {"StagerService": TRIGGER},
}

# Global (not per-DAG) permissions of the custom roles: what the UI and the API need around the
# DAGs they are given. Reading task instances, logs and XComs is still limited to those DAGs.
_BASE = [
    ("can_read", "Website"), ("can_read", "My Password"), ("can_edit", "My Password"),
    ("can_read", "My Profile"), ("can_edit", "My Profile"),
    # FAB checks task instances against the global "DAG Runs" and "Task Instances" resources (and then
    # the DAG): without them a role cannot read the task instances even of its own DAGs
    ("can_read", "DAG Runs"), ("can_read", "Task Instances"), ("can_read", "Task Logs"), ("can_read", "XComs"),
    ("can_read", "DAG Dependencies"), ("can_read", "DAG Code"), ("can_read", "DAG Versions"),
    ("can_read", "DAG Warnings"), ("can_read", "Assets"), ("can_read", "Pools"),
    ("menu_access", "DAGs"), ("menu_access", "DAG Runs"), ("menu_access", "Browse"),
    ("menu_access", "Task Instances"), ("menu_access", "Docs"), ("menu_access", "Documentation"),
]
CUSTOM_BASE: dict[str, list[tuple[str, str]]] = {name: list(_BASE) for name in CUSTOM_ROLES}
GLOBAL_DAG_ACTIONS = ("can_read", "can_edit", "can_delete")


def dag_resource(dag_id: str, resource: str) -> str:
    return ("DAG:" if resource == DAGS else "DAG Run:") + dag_id


def sync(sm, pipelines: Mapping[str, Mapping[str, Mapping[str, set[str]]]] = PIPELINES) -> list[str]:
    """Make the roles exactly as this module says; returns what changed (for the log)."""
    changes: list[str] = []
    sm.sync_roles()  # FAB's own resources, actions and built-in roles
    roles = {name: sm.find_role(name) or sm.add_role(name) for name in ("Viewer", "User", "Op", *CUSTOM_ROLES)}

    def grant(role, action: str, resource: str) -> None:
        perm = sm.get_permission(action, resource) or sm.create_permission(action, resource)
        if perm not in role.permissions:
            sm.add_permission_to_role(role, perm)
            changes.append(f"+ {role.name}: {action} on {resource}")

    def revoke(role, perm) -> None:
        sm.remove_permission_from_role(role, perm)
        changes.append(f"- {role.name}: {perm.action.name} on {perm.resource.name}")

    for name, role in roles.items():
        # nobody but Admin sees every DAG
        for perm in list(role.permissions):
            if perm.resource.name == DAGS and perm.action.name in GLOBAL_DAG_ACTIONS:
                revoke(role, perm)
        for action, resource in CUSTOM_BASE.get(name, ()):
            grant(role, action, resource)
        wanted = {(action, dag_resource(dag_id, resource))
                  for dag_id, by_role in pipelines.items()
                  for resource, actions in by_role.get(name, {}).items() for action in actions}
        for perm in list(role.permissions):  # per-DAG grants not in the policy (UI edits, renamed DAGs)
            res = perm.resource.name
            if res.startswith(("DAG:", "DAG Run:")) and (perm.action.name, res) not in wanted:
                revoke(role, perm)
        for action, resource in sorted(wanted):
            grant(role, action, resource)
    return changes


def upsert_users(sm, users: Mapping[str, Mapping[str, str]]) -> None:
    """Create (or bring up to date: role and password) each user of ``users``."""
    for name, spec in users.items():
        role = sm.find_role(spec["role"])
        if role is None:
            raise SystemExit(f"user {name}: role {spec['role']!r} does not exist (run 'sync' first)")
        user = sm.find_user(username=name)
        if user is None:
            created = sm.add_user(name, name, "-", spec.get("email") or f"{name}@localhost", role, spec["password"])
            if not created:
                raise SystemExit(f"user {name} could not be created")
            continue
        if [r.name for r in user.roles] != [role.name]:
            user.roles = [role]
            sm.update_user(user)
        sm.reset_password(user.id, spec["password"])


def _read_users(path: Path) -> dict[str, dict[str, str]]:
    if path.stat().st_mode & 0o077:
        raise SystemExit(f"{path} must not be readable by group or others (chmod 600)")
    data = json.loads(path.read_text())
    for name, spec in data.items():
        if not isinstance(spec, dict) or not spec.get("role") or not spec.get("password"):
            raise SystemExit(f"{path}: user {name!r} needs a role and a password")
    return data


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ("sync", "users", "admin"):
        raise SystemExit("usage: python -m sensitive_data.auth.roles sync | users USERS_JSON | admin NAME")
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder  # noqa: PLC0415

    with get_application_builder() as appbuilder:
        sm = appbuilder.sm
        if args[0] == "sync":
            for line in sync(sm):
                print(line)
            print("roles in sync with sensitive_data.auth.roles")
        elif args[0] == "users":
            upsert_users(sm, _read_users(Path(args[1])))
            print("users up to date")
        else:  # docker: the admin's password comes from the environment
            password = os.environ.get("AIRFLOW_ADMIN_PASSWORD")
            if not password:
                raise SystemExit("AIRFLOW_ADMIN_PASSWORD is not set")
            upsert_users(sm, {args[1]: {"role": "Admin", "password": password}})
            print(f"admin user {args[1]} up to date")


if __name__ == "__main__":
    main()
