"""The real-Airflow harness: one deployment per executor per test session.

``airflow`` is parametrized over LocalExecutor (SQLite metadata DB) and CeleryExecutor (Redis
broker, PostgreSQL metadata DB, two workers); ``airflow_local`` / ``airflow_celery`` pick one.
Each deployment runs every devstack stand-in on free ports, applies airflow_settings.yaml with
those ports, and is driven only through the REST API (see devstack/airflow_stack.py).
"""

from __future__ import annotations

import os
import pwd
import uuid

import pytest

from devstack.airflow_stack import AirflowStack
from devstack.checks import require_services

_STACKS: dict[str, AirflowStack] = {}
ME = pwd.getpwuid(os.geteuid()).pw_name
# Accounts besides `admin` (FAB auth manager, roles of sensitive_data.auth.roles, docs/security.md):
# two researchers - the POSIX user the tests run as (so that its stager jobs run on this machine)
# and bob, for "a researcher sees only their own work" - and one account of each staff role and
# of the other custom roles, which tests/security attacks with.
USERS = {
    ME: "Researcher",
    "bob": "Researcher",
    "vera": "Viewer",
    "ulla": "User",
    "otto": "Op",
    "carla": "CleanRoomAnalyst",
    "lab-streamer": "StagerService",
}


def stack_for(kind: str, tmp_path_factory) -> AirflowStack:
    """The session's deployment of ``kind`` (``local`` or ``celery``), started on first use."""
    if kind not in _STACKS:
        if kind == "celery":
            require_services("postgres", "redis")
            stack = AirflowStack(tmp_path_factory.mktemp("airflow-celery"), executor="CeleryExecutor",
                                 database=f"airflow_e2e_{os.getpid()}_{uuid.uuid4().hex[:6]}",
                                 drop_database=True, workers=2, users=USERS)
        else:
            stack = AirflowStack(tmp_path_factory.mktemp("airflow-local"), executor="LocalExecutor", users=USERS)
        stack.start()
        _STACKS[kind] = stack
    return _STACKS[kind]


def stop_stacks() -> None:
    for stack in _STACKS.values():
        stack.stop()
    _STACKS.clear()


@pytest.fixture(scope="session", autouse=True)
def _stop_stacks():
    yield
    stop_stacks()


@pytest.fixture(scope="session")
def airflow_local(tmp_path_factory) -> AirflowStack:
    return stack_for("local", tmp_path_factory)


@pytest.fixture(scope="session")
def airflow_celery(tmp_path_factory) -> AirflowStack:
    return stack_for("celery", tmp_path_factory)


@pytest.fixture(scope="session", params=["local", pytest.param("celery", marks=pytest.mark.celery)])
def airflow(request, tmp_path_factory) -> AirflowStack:
    return stack_for(request.param, tmp_path_factory)


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
