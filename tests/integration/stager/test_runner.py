"""The transfer as a child process running as the stager user (the uid switch itself: test_run_as_user).

Transfers run as a researcher account (tests/integration/stager/accounts.py), never as root.
"""

from __future__ import annotations

import os
import pwd
import shutil

import pytest

from include.stager import runner
from include.stager.errors import UserError
from tests.integration.stager.accounts import (
    OTHER_RESEARCHER,
    ensure_user,
    give_to,
    rules,
    runner_python,
    shared_dir,
    transfer_user,
)
from tests.integration.stager.conftest import make_tree


def spec(src, dst, account, **kw):
    return {"src": src, "dst": dst, "threads": 2, "report_interval": 0.2,
            "irods": {"host": account.host, "port": account.port, "zone": account.zone, "user": account.user,
                      "password": account.password}, **kw}


@pytest.fixture
def workdir():
    path = shared_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_child_process_transfers_and_reports_progress(workdir, alice, coll):
    files = make_tree(workdir / "src", small_files=30)
    give_to(workdir / "src", transfer_user())
    seen = []
    result = runner.run_as(spec(str(workdir / "src"), f"irods:{coll}", alice), transfer_user(),
                           on_progress=seen.append, rules=rules(), python=runner_python())
    assert result["processed"] == len(files) and result["failed"] == 0
    assert seen and seen[-1]["processed"] == len(files)
    assert "alice-secret" not in repr(seen) + repr(result)


def test_child_errors_come_back_typed(workdir, alice, coll):
    with pytest.raises(UserError, match="does not exist"):
        runner.run_as(spec(str(workdir / "missing"), f"irods:{coll}", alice), transfer_user(),
                      on_progress=lambda p: None, rules=rules(), python=runner_python())


def test_unknown_stager_user_is_refused():
    with pytest.raises(UserError, match="not a user known"):
        runner.identity("no-such-user-xyz", rules("no-such-user-xyz"))


@pytest.mark.parametrize(("user", "match"), [
    ("root", "transfers never run as root"), ("0", "is a number"), ("daemon", "system account"),
    ("nobody", "above 60000"),
])
def test_root_system_and_overflow_accounts_never_run_a_transfer(tmp_path, alice, coll, user, match):
    """Refused before any process starts, even when allow-listed, as root and as any other user."""
    (tmp_path / "f").write_text("x")
    started = []
    with pytest.raises(UserError, match=match):
        runner.run_as(spec(str(tmp_path), f"irods:{coll}", alice), user, on_progress=lambda p: None,
                      on_start=started.append, rules=rules(user))
    assert started == []


def test_a_user_outside_the_allow_list_is_refused(tmp_path, alice, coll):
    started = []
    for allow in ({}, rules("someone-else")):
        with pytest.raises(UserError, match="may not run transfers"):
            runner.run_as(spec(str(tmp_path), f"irods:{coll}", alice), transfer_user(),
                          on_progress=lambda p: None, on_start=started.append, rules=allow)
    assert started == []


def test_a_non_root_worker_only_acts_as_itself(monkeypatch):
    researcher = pwd.getpwnam(transfer_user())
    monkeypatch.setattr(runner.os, "geteuid", lambda: researcher.pw_uid)
    assert runner.identity(researcher.pw_name, rules()) == {}
    if os.geteuid() == 0:
        other = ensure_user(OTHER_RESEARCHER)
    else:
        other = next((pw for pw in pwd.getpwall() if 1000 <= pw.pw_uid <= 60000 and pw.pw_uid != researcher.pw_uid),
                     None)
    assert other is not None, "a second regular account is needed (run as root to have one created)"
    with pytest.raises(UserError, match=f"can only transfer as '{researcher.pw_name}'"):
        runner.identity(other.pw_name, rules(other.pw_name))
