"""POSIX accounts for the stager's tests: transfers never run as root or a system account, so a test
that runs one needs a researcher account (uid >= 1000). As root the accounts are created when
missing (idempotent ``useradd``, in the ``stager-users`` group the local settings allow-list); as
another user the tests run transfers as that user, who must then be a regular account.

The allow-list given to the code under test is explicit (``rules()``): the production default
(nobody allowed) is never relaxed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

RESEARCHER = "sdp-researcher"
OTHER_RESEARCHER = "sdp-researcher2"
STREAMER = "sdp-streamer"
GROUP = "stager-users"
# An interpreter outside /root: the venv's one links into a pyenv under /root (mode 0700).
RUNNER_PYTHON = os.environ.get("STAGER_TEST_RUNNER_PYTHON", "/usr/bin/python3")


def me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def ensure_user(name: str) -> pwd.struct_passwd:
    """The account ``name``, created (as root) when missing; an AssertionError says why it cannot be."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        assert os.geteuid() == 0, f"the test account {name!r} does not exist and only root can create it"
        assert shutil.which("useradd"), "useradd is needed to create the stager test accounts"
        subprocess.run(["groupadd", "-f", GROUP], check=True, capture_output=True)
        res = subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--gid", GROUP,
                              "--key", "UID_MIN=1000", "--key", "UID_MAX=60000", name],
                             capture_output=True, text=True, check=False)
        if res.returncode not in (0, 9):  # 9: created meanwhile by a parallel test run
            raise AssertionError(f"useradd {name} failed: {res.stderr}") from None
        pw = pwd.getpwnam(name)
    assert 1000 <= pw.pw_uid <= 60000, f"test account {name!r} has uid {pw.pw_uid}, not a regular account"
    return pw


def transfer_user() -> str:
    """Whom the tests' transfers run as: a researcher account as root, else the current user."""
    return ensure_user(RESEARCHER).pw_name if os.geteuid() == 0 else me()


def rules(*users: str) -> dict:
    """An explicit allow-list for the code under test."""
    return {"allowed_users": list(users or (transfer_user(),))}


def runner_python() -> str | None:
    """The interpreter of the transfer child: one the researcher can run when the tests run as root."""
    return RUNNER_PYTHON if os.geteuid() == 0 else None


def shared_dir(prefix: str = "stager-test-") -> Path:
    """A directory under /tmp that the researcher may enter, read and write (pytest's tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o755)
    if os.geteuid() == 0:
        pw = ensure_user(RESEARCHER)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def give_to(path: Path, user: str) -> None:
    """Hand a test tree to ``user`` (as root), so that it reads what a researcher's own files are."""
    if os.geteuid() != 0:
        return
    pw = pwd.getpwnam(user)
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), pw.pw_uid, pw.pw_gid)
