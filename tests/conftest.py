"""Fixtures shared by every kind of test.

``devstack``: starts devstack stand-ins (and moto's S3 server) on free ports, once per session,
and stops their process groups at the end. ``devstack.start("vault", "spire")`` returns the
SDP_* variables (ports) of everything started so far, plus ``SDP_LOCAL``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devstack.procs import Proc, service_vars, start_service, stop_all, with_needs
from devstack.registry import SERVICES

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


class DevStack:
    def __init__(self, local: Path):
        self.local = local
        self.vars: dict[str, str] = {"SDP_LOCAL": str(local)}
        self.procs: dict[str, Proc] = {}

    def start(self, *names: str) -> dict[str, str]:
        for name in with_needs(names):
            if name in self.procs:
                continue
            self.vars.update(service_vars([name], fixed_ports=False))
            self.procs[name] = start_service(
                SERVICES[name], variables=self.vars, local=self.local, log_dir=self.local / "logs",
                cwd=ROOT,
            )
        return dict(self.vars)

    def stop(self) -> None:
        stop_all(self.procs.values(), grace=5)
        self.procs.clear()


@pytest.fixture(scope="session")
def devstack(tmp_path_factory):
    stack = DevStack(tmp_path_factory.mktemp("devstack"))
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (reference data only). Tests that need it fail, not skip, when it is absent."""
    if not SHARED.is_dir():
        pytest.fail(f"reference data directory {SHARED} is missing")
    return SHARED


def pytest_configure(config):
    os.environ.setdefault("SDP_TEST", "1")
