"""The security suite's harness: a real Airflow (the e2e deployment) and real accounts to attack it with.

The deployment is the e2e harness's (``tests/e2e/conftest.py``): one per executor per session, shared
with tests/e2e when both run. It uses the FAB auth manager with the roles of
``sensitive_data.auth.roles`` (docs/security.md). Accounts (``accounts``):

==============  =====================  ==================================================
key             user name              role
==============  =====================  ==================================================
admin           ``admin``              Admin
researcher      the POSIX user         Researcher (its stager jobs run on this machine)
researcher2     ``bob``                Researcher
viewer          ``vera``               Viewer
op              ``otto``               Op
user            ``ulla``               User
analyst         ``carla``              CleanRoomAnalyst
streamer        ``lab-streamer``       StagerService
==============  =====================  ==================================================

``stack.api_as(name, method, path, ...)`` calls ``/api/v2`` (or any path) as that user;
``as_(key)`` gives a small client bound to one account. ``configured_secrets`` is every secret the
harness configured (passwords, tokens, keys); ``assert_no_secret(text, secrets)`` fails naming which
one leaked (never printing it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from devstack.airflow_stack import AirflowStack
from devstack.registry import SERVICES
from tests.e2e.conftest import ME, USERS, stack_for, stop_stacks

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = {"admin": "admin", "researcher": ME, "researcher2": "bob", "viewer": "vera", "op": "otto",
            "user": "ulla", "analyst": "carla", "streamer": "lab-streamer"}
assert set(ACCOUNTS.values()) - {"admin"} <= set(USERS), "every account must be a harness user"
# names whose value in airflow_settings.yaml is a secret (connection passwords and secret extras)
_SECRET_KEY = re.compile(r"(password|passphrase|secret|token|private_key)$", re.IGNORECASE)


@dataclass
class Account:
    """One real Airflow account of the deployment."""

    stack: AirflowStack
    name: str

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        return self.stack.api_as(self.name, method, path, **kwargs)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)


@pytest.fixture(scope="session", autouse=True)
def _stop_security_stacks():
    yield
    stop_stacks()


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> AirflowStack:
    """The LocalExecutor deployment (SQLite metadata DB)."""
    return stack_for("local", tmp_path_factory)


@pytest.fixture(scope="session")
def stack_celery(tmp_path_factory) -> AirflowStack:
    """The CeleryExecutor deployment (PostgreSQL, Redis, two workers); mark tests using it ``celery``."""
    return stack_for("celery", tmp_path_factory)


@pytest.fixture(scope="session")
def accounts() -> dict[str, str]:
    return dict(ACCOUNTS)


@pytest.fixture(scope="session")
def as_(stack):
    """``as_("viewer").get("/api/v2/...")``: the REST API as one of ``ACCOUNTS``."""

    def make(key: str) -> Account:
        return Account(stack, ACCOUNTS[key])

    return make


def settings_secrets(path: Path = ROOT / "airflow_settings.yaml") -> dict[str, str]:
    """Connection passwords and secret-looking extras of airflow_settings.yaml, name -> value."""
    doc = yaml.safe_load(path.read_text())["airflow"]
    out: dict[str, str] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, str) and _SECRET_KEY.search(str(k)) and "${" not in v and len(v) >= 4:
                    out[f"{prefix}.{k}"] = v
                else:
                    walk(f"{prefix}.{k}", v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(f"{prefix}[{i}]", v)

    for conn in doc.get("connections") or []:
        if conn.get("conn_password"):
            out[f"{conn['conn_id']}.password"] = str(conn["conn_password"])
        walk(conn["conn_id"], conn.get("conn_extra") or {})
    for var in doc.get("variables") or []:
        if _SECRET_KEY.search(str(var.get("variable_name", ""))):
            out[f"variable {var['variable_name']}"] = str(var.get("variable_value"))
    return out


def stack_secrets(stack: AirflowStack) -> dict[str, str]:
    """Every secret the harness configured for ``stack``, name -> value."""
    out = {f"password of {name}": pw for name, pw in stack.passwords.items()}
    for name in ("fernet_key", "api_secret", "jwt_secret"):
        path = stack.home / f".{name}"
        if path.exists():
            out[name] = path.read_text().strip()
    for svc in SERVICES.values():
        for i, value in enumerate(svc.secrets):
            out[f"{svc.name} secret #{i}"] = value
    out.update(settings_secrets())
    return out


@pytest.fixture(scope="session")
def configured_secrets(stack) -> dict[str, str]:
    return stack_secrets(stack)


def find_secrets(text: str, secrets: dict[str, str]) -> list[str]:
    """The names of the secrets that appear in ``text``."""
    return sorted(name for name, value in secrets.items() if value and value in text)


def assert_no_secret(text: str | bytes | Iterable, secrets: dict[str, str], where: str) -> None:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    elif not isinstance(text, str):
        text = repr(text)
    leaked = find_secrets(text, secrets)
    assert not leaked, f"{where}: secret(s) {leaked} appear in it"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/security/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
