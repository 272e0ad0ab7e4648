"""The transfer child really runs as the stager user: uid and gid of a researcher account
(``sdp-researcher``, created when missing; tests/integration/stager/accounts.py) when the worker is
root, with an interpreter every user can execute (the ``runner_python`` setting).

As root: files the researcher may read are uploaded, a root-only file fails on its own with a
permission error (a user error), and a download is written by the researcher. As any other user the
same test checks the documented refusal instead, so it never passes by skipping.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from include.stager import runner
from include.stager.errors import ConfigurationError, UserError
from tests.integration.stager.accounts import (
    RESEARCHER,
    RUNNER_PYTHON,
    ensure_user,
    me,
    rules,
    transfer_user,
)
from tests.integration.stager.test_runner import spec

STAGER_USER = RESEARCHER


@pytest.fixture
def shared_dir():
    """A directory under /tmp that other users can enter (pytest's own tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="stager-run-as-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _runner_python_fits() -> str:
    """Why RUNNER_PYTHON cannot run the child, or ""."""
    if not os.access(RUNNER_PYTHON, os.X_OK):
        return f"{RUNNER_PYTHON} does not exist or is not executable"
    out = subprocess.run([RUNNER_PYTHON, "-c", "import sys; print(*sys.version_info[:2], sep='.')"],
                         capture_output=True, text=True, check=False).stdout.strip()
    mine = "{}.{}".format(*sys.version_info[:2])
    return "" if out == mine else f"{RUNNER_PYTHON} is Python {out}, the venv is {mine}"


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o755)
    path.write_bytes(data)
    os.chmod(path, mode)


def test_transfers_run_with_the_stager_users_uid(shared_dir, alice, coll, client, caplog):
    src = shared_dir / "src"
    readable = {"a.txt": b"alpha\n", "sub/b.bin": os.urandom(300_000), "sub/deeper/c.txt": b"c\n"}
    for rel, data in readable.items():
        _write(src / rel, data, 0o644)
    _write(src / "secret.txt", b"root only\n", 0o600)
    assert (src / "secret.txt").stat().st_uid == os.geteuid()
    job = spec(str(src), f"irods:{coll}", alice)

    if os.geteuid() != 0:  # a non-root worker acts only as itself: the job is refused, nothing moves
        other = next((pw for pw in pwd.getpwall() if 1000 <= pw.pw_uid <= 60000 and pw.pw_uid != os.geteuid()),
                     None)
        assert other is not None, "a second regular account is needed for this test (or run it as root)"
        with pytest.raises(UserError, match=f"can only transfer as '{me()}', not as stagerUser '{other.pw_name}'"):
            runner.run_as(job, other.pw_name, on_progress=lambda p: None, python=RUNNER_PYTHON,
                          rules=rules(other.pw_name))
        assert client.kind(coll) is None
        return
    researcher = ensure_user(STAGER_USER)

    problem = _runner_python_fits()
    assert not problem, f"{problem}: set STAGER_TEST_RUNNER_PYTHON to a Python every user can run"
    log = logging.getLogger("test.stager.run_as")
    caplog.set_level(logging.INFO, logger=log.name)

    # upload: what researcher can read goes, the root-only file fails on its own as a user error
    progress = []
    with pytest.raises(UserError, match=r"1 of 4 files failed; first error: secret.txt: permission denied"):
        runner.run_as(job, STAGER_USER, on_progress=progress.append, python=RUNNER_PYTHON, log=log,
                      rules=rules(STAGER_USER))
    assert (progress[-1]["processed"], progress[-1]["failed"]) == (3, 1)
    assert f"running as uid={researcher.pw_uid} gid={researcher.pw_gid} with {RUNNER_PYTHON}" in caplog.text
    _colls, remote = client.walk(coll)
    assert sorted(remote) == sorted(readable)

    # download: written by researcher into a directory researcher owns
    dst_parent = shared_dir / "dst"
    dst_parent.mkdir()
    os.chown(dst_parent, researcher.pw_uid, researcher.pw_gid)
    dst = dst_parent / "down"
    done = runner.run_as(spec(f"irods:{coll}", str(dst), alice), STAGER_USER, on_progress=lambda p: None,
                         python=RUNNER_PYTHON, log=log, rules=rules(STAGER_USER))
    assert (done["processed"], done["failed"]) == (3, 0)
    for rel, data in readable.items():
        st = (dst / rel).stat()
        assert (st.st_uid, st.st_gid) == (researcher.pw_uid, researcher.pw_gid), rel
        assert (dst / rel).read_bytes() == data
    for sub in (dst, dst / "sub", dst / "sub/deeper"):
        assert sub.stat().st_uid == researcher.pw_uid

    # and researcher cannot write where only root may
    closed = shared_dir / "root-only"
    closed.mkdir(mode=0o755)
    with pytest.raises(UserError, match="permission denied"):
        runner.run_as(spec(f"irods:{coll}", str(closed / "down"), alice), STAGER_USER,
                      on_progress=lambda p: None, python=RUNNER_PYTHON, log=log, rules=rules(STAGER_USER))
    assert not (closed / "down").exists()


def test_a_runner_python_that_does_not_exist_is_a_deployment_error(tmp_path, alice, coll):
    with pytest.raises(ConfigurationError, match="cannot run as"):
        runner.run_as(spec(str(tmp_path), f"irods:{coll}", alice), transfer_user(), on_progress=lambda p: None,
                      python="/nonexistent/python3", rules=rules())


def test_another_runner_python_gets_the_project_and_the_venvs_site_packages():
    import sysconfig

    other = runner.child_pythonpath("/usr/bin/python3", "/extra")
    assert other.split(os.pathsep) == [str(runner.ROOT), sysconfig.get_paths()["purelib"],
                                       *([sysconfig.get_paths()["platlib"]]
                                         if sysconfig.get_paths()["platlib"] != sysconfig.get_paths()["purelib"]
                                         else []), "/extra"]
    assert runner.child_pythonpath(sys.executable) == str(runner.ROOT)


def test_a_runner_python_that_cannot_import_the_engine_is_a_deployment_error(shared_dir, alice, coll):
    broken = shared_dir / "python3"  # stands for an interpreter of another version, without the venv's packages
    broken.write_text("#!/bin/sh\nexec /bin/sh -c 'echo \"ModuleNotFoundError: No module named irods\" >&2; exit 1'\n")
    broken.chmod(0o755)
    with pytest.raises(ConfigurationError, match="cannot start with .*No module named irods"):
        runner.run_as(spec(str(shared_dir), f"irods:{coll}", alice), transfer_user(), on_progress=lambda p: None,
                      python=str(broken), rules=rules())
