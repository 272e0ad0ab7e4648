"""The transfer as a child process running as the stager user (the uid switch itself: test_run_as_user)."""

from __future__ import annotations

import os
import pwd

import pytest

from include.stager import runner
from include.stager.errors import UserError
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
