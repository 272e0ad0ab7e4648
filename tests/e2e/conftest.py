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
# Non-admin users besides `admin`: the POSIX user the tests run as (so that its jobs can run on
# this machine) and another researcher, for "a user sees only their own work".
USERS = {pwd.getpwuid(os.geteuid()).pw_name: "user", "bob": "user"}


def _stack(kind: str, tmp_path_factory) -> AirflowStack:
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


@pytest.fixture(scope="session", autouse=True)
def _stop_stacks():
    yield
    for stack in _STACKS.values():
        stack.stop()
    _STACKS.clear()


@pytest.fixture(scope="session")
def airflow_local(tmp_path_factory) -> AirflowStack:
    return _stack("local", tmp_path_factory)


@pytest.fixture(scope="session")
def airflow_celery(tmp_path_factory) -> AirflowStack:
    return _stack("celery", tmp_path_factory)


@pytest.fixture(scope="session", params=["local", pytest.param("celery", marks=pytest.mark.celery)])
def airflow(request, tmp_path_factory) -> AirflowStack:
    return _stack(request.param, tmp_path_factory)


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
