"""The transfer as a child process running as the stager user."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys

import pytest

from include.stager import runner
from include.stager.errors import ConfigurationError, UserError
from tests.integration.stager.conftest import make_tree


def spec(src, dst, account, **kw):
    return {"src": src, "dst": dst, "threads": 2, "report_interval": 0.2,
            "irods": {"host": account.host, "port": account.port, "zone": account.zone, "user": account.user,
                      "password": account.password}, **kw}


def me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def test_child_process_transfers_and_reports_progress(tmp_path, alice, coll):
    files = make_tree(tmp_path / "src", small_files=30)
    seen = []
    result = runner.run_as(spec(str(tmp_path / "src"), f"irods:{coll}", alice), me(), on_progress=seen.append)
    assert result["processed"] == len(files) and result["failed"] == 0
    assert seen and seen[-1]["processed"] == len(files)
    assert "alice-secret" not in repr(seen) + repr(result)


def test_child_errors_come_back_typed(tmp_path, alice, coll):
    with pytest.raises(UserError, match="does not exist"):
        runner.run_as(spec(str(tmp_path / "missing"), f"irods:{coll}", alice), me(),
                      on_progress=lambda p: None)


def test_unknown_stager_user_is_refused():
    with pytest.raises(UserError, match="not a user known"):
        runner.identity("no-such-user-xyz")


def test_a_non_root_worker_only_acts_as_itself(monkeypatch):
    nobody = pwd.getpwnam("nobody")
    monkeypatch.setattr(runner.os, "geteuid", lambda: nobody.pw_uid)
    assert runner.identity("nobody") == {}
    with pytest.raises(UserError, match="can only transfer as 'nobody'"):
        runner.identity("root")


def _nobody_can_run_python() -> bool:
    try:
        probe = subprocess.run([sys.executable, "-c", "0"], user="nobody", cwd="/", check=False)
        return probe.returncode == 0
    except PermissionError:
        return False


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs a root worker")
def test_a_root_worker_runs_the_transfer_with_the_users_uid(tmp_path, alice, coll):
    """The child gets the user's uid: as ``nobody`` it cannot read a root-only tree (a user error),
    or, where ``nobody`` cannot even run the workers' Python, the job is refused as a deployment error."""
    secret = tmp_path / "secret"
    make_tree(secret)
    os.chmod(secret, 0o700)
    ident = runner.identity("nobody")
    assert ident["user"] == pwd.getpwnam("nobody").pw_uid and ident["group"] == pwd.getpwnam("nobody").pw_gid
    expected = (UserError, "permission denied")
    if not _nobody_can_run_python():
        expected = (ConfigurationError, "cannot run as")
    with pytest.raises(expected[0], match=expected[1]):
        runner.run_as(spec(str(secret), f"irods:{coll}", alice), "nobody", on_progress=lambda p: None)
