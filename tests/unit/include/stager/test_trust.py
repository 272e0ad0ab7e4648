"""Seals, job-bound drPass and the account rules: the pieces the transfer tasks rely on."""

from __future__ import annotations

import base64
import os
import pwd

import pytest
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from include.stager import seal as job_seal
from include.stager.accounts import check_stager_user, identities_of, may_act_as
from include.stager.credentials import decrypt_bound, decrypt_client, encrypt_bound, encrypt_password
from include.stager.errors import UserError
from include.stager.streamer import confine_source

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SEAL_KEY = os.urandom(32)
JOB = {"stagerUser": "alice", "drUser": "alice", "drPass": "CIPHERTEXT", "srcURL": "/project/p/raw/x",
       "dstURL": "irods:/z/home/alice/x", "stagerUserEmail": "alice@example.org", "title": "t", "timeout": 5}


# ---------------------------------------------------------------- seal
def test_a_seal_verifies_for_its_own_job_run_and_submitter():
    s = job_seal.seal(JOB, "run-1", "alice", SEAL_KEY)
    job_seal.verify(JOB, "run-1", s, "alice", SEAL_KEY, triggering_user="alice")
    job_seal.verify(JOB, "run-1", s, "alice", SEAL_KEY, triggering_user=None)  # nothing recorded
    # title and timeouts are not sealed (they decide nothing about who acts on what)
    job_seal.verify({**JOB, "title": "other", "timeout": 0}, "run-1", s, "alice", SEAL_KEY)


@pytest.mark.parametrize("field", ["stagerUser", "drUser", "drPass", "srcURL", "dstURL", "stagerUserEmail"])
def test_every_sealed_field_is_covered(field):
    s = job_seal.seal(JOB, "run-1", "alice", SEAL_KEY)
    with pytest.raises(UserError, match="does not match this run"):
        job_seal.verify({**JOB, field: "root"}, "run-1", s, "alice", SEAL_KEY)


def test_a_seal_copied_to_another_run_or_submitter_is_refused():
    s = job_seal.seal(JOB, "run-1", "alice", SEAL_KEY)
    with pytest.raises(UserError, match="does not match"):
        job_seal.verify(JOB, "run-2", s, "alice", SEAL_KEY)
    with pytest.raises(UserError, match="does not match"):
        job_seal.verify(JOB, "run-1", s, "bob", SEAL_KEY)
    with pytest.raises(UserError, match="triggered by 'bob'"):
        job_seal.verify(JOB, "run-1", s, "alice", SEAL_KEY, triggering_user="bob")


@pytest.mark.parametrize("value", [None, "", "v1.", "v2." + "A" * 43, "v1.!!!!", "v1.AAAA", 42])
def test_missing_or_malformed_seals_are_refused(value):
    with pytest.raises(UserError, match="no seal|malformed"):
        job_seal.verify(JOB, "run-1", value, "alice", SEAL_KEY)


def test_a_seal_made_with_another_key_is_refused():
    forged = job_seal.seal(JOB, "run-1", "alice", os.urandom(32))
    with pytest.raises(UserError, match="forged"):
        job_seal.verify(JOB, "run-1", forged, "alice", SEAL_KEY)


def test_short_keys_and_missing_submitters_are_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        job_seal.seal(JOB, "run-1", "alice", b"short")
    with pytest.raises(UserError, match="submittedBy"):
        job_seal.verify(JOB, "run-1", job_seal.seal(JOB, "run-1", "alice", SEAL_KEY), "", SEAL_KEY)


def test_the_encoding_cannot_be_shifted_between_fields():
    a = job_seal.canonical({**JOB, "srcURL": "/a", "dstURL": "b"}, "r", "u")
    b = job_seal.canonical({**JOB, "srcURL": "/a\",\"dstURL\":\"b", "dstURL": ""}, "r", "u")
    assert a != b


# ---------------------------------------------------------------- drPass bound to its job
def test_a_bound_ciphertext_opens_only_for_its_job():
    token = encrypt_bound("pw", KEY, dr_user="alice", stager_user="alice", job_id="run-1")
    assert decrypt_bound(token, KEY, dr_user="alice", stager_user="alice", job_id="run-1") == "pw"
    for kw in ({"dr_user": "bob"}, {"stager_user": "bob"}, {"job_id": "run-2"}):
        args = {"dr_user": "alice", "stager_user": "alice", "job_id": "run-1", **kw}
        with pytest.raises(UserError, match="not encrypted for this job"):
            decrypt_bound(token, KEY, **args)


@pytest.mark.parametrize("oaep", [False, True])
def test_tasks_refuse_client_ciphertexts(oaep):
    """PKCS#1 v1.5 (and unlabelled OAEP) are for the API only; a task never accepts them."""
    token = encrypt_password("pw", KEY, oaep=oaep)
    with pytest.raises(UserError, match="not encrypted for this job"):
        decrypt_bound(token, KEY, dr_user="alice", stager_user="alice", job_id="run-1")


def test_bad_pkcs1v15_padding_never_yields_a_usable_plaintext_silently():
    """With implicit rejection (OpenSSL >= 3.2) garbage may decrypt to random bytes; the API then
    checks them against the repository. Here: 50 random ciphertexts never decrypt to a value equal to
    a real password, and none is accepted by the bound (task) decryption."""
    raw_key_size = KEY.key_size // 8
    for _ in range(50):
        value = base64.b64encode(os.urandom(raw_key_size)).decode()
        try:
            plain = decrypt_client(value, KEY)
        except UserError:
            plain = None
        assert plain != "alice-secret"
        with pytest.raises(UserError):
            decrypt_bound(value, KEY, dr_user="a", stager_user="a", job_id="r")


def test_pkcs1v15_client_ciphertext_still_opens_for_the_api():
    token = base64.b64encode(KEY.public_key().encrypt(b"secret", padding.PKCS1v15())).decode()
    assert decrypt_client(token, KEY) == "secret"


# ---------------------------------------------------------------- account rules
def _some_user(pred):
    for pw in pwd.getpwall():
        if pred(pw):
            return pw
    return None


def test_root_numeric_ids_and_system_accounts_are_refused():
    allow = {"allowed_users": ["root", "daemon", "nobody", "0", "1"]}  # even when allow-listed
    for name, match in (("root", "root"), ("0", "a number"), ("1", "a number"), ("+0", "a number")):
        with pytest.raises(UserError, match=match):
            check_stager_user(name, **allow)
    daemon = _some_user(lambda pw: pw.pw_name == "daemon")
    assert daemon is not None and 0 < daemon.pw_uid < 1000
    with pytest.raises(UserError, match="system account"):
        check_stager_user("daemon", **allow)
    with pytest.raises(UserError, match="above 60000"):
        check_stager_user("nobody", **allow)
    with pytest.raises(UserError, match="not a user known"):
        check_stager_user("no-such-user-xyz", **allow)


def test_min_uid_is_configurable_and_the_allow_list_is_required():
    daemon = pwd.getpwnam("daemon")
    check_stager_user("daemon", min_uid=daemon.pw_uid, allowed_users=["daemon"])
    with pytest.raises(UserError, match="no stager users are configured"):
        check_stager_user("daemon", min_uid=daemon.pw_uid)
    with pytest.raises(UserError, match="not in the stager's allowed_users"):
        check_stager_user("daemon", min_uid=daemon.pw_uid, allowed_users=["someone"])


def test_group_membership_allows():
    import grp

    daemon = pwd.getpwnam("daemon")
    group = grp.getgrgid(daemon.pw_gid).gr_name
    check_stager_user("daemon", min_uid=daemon.pw_uid, allowed_groups=[group])
    with pytest.raises(UserError, match="allowed_groups"):
        check_stager_user("daemon", min_uid=daemon.pw_uid, allowed_groups=["no-such-group-xyz"])


def test_identity_mapping():
    assert identities_of("alice", {}) == ({"alice"}, {"alice"})
    ids = {"carol": {"stagerUser": "c1", "drUser": ["c@ru.nl"]}}
    assert identities_of("carol", ids) == ({"c1"}, {"c@ru.nl"})
    may_act_as("carol", "c1", "c@ru.nl", ids)
    with pytest.raises(UserError, match="stagerUser"):
        may_act_as("carol", "carol", "c@ru.nl", ids)
    with pytest.raises(UserError, match="repository account 'alice'"):
        may_act_as("bob", "bob", "alice", ids)


# ---------------------------------------------------------------- streamer source confinement
@pytest.fixture
def storage(tmp_path):
    template = str(tmp_path / "project" / "{projectId}" / "raw")
    mine = tmp_path / "project" / "3010000.01" / "raw"
    other = tmp_path / "project" / "3055000.01" / "raw"
    for d in (mine / "sub-01", other / "sub-09", tmp_path / "outside"):
        d.mkdir(parents=True)
    (mine / "link-out").symlink_to(tmp_path / "outside")
    (mine / "link-other").symlink_to(other / "sub-09")
    (mine / "link-in").symlink_to(mine / "sub-01")
    return template, mine, other, tmp_path


def test_a_source_inside_the_projects_raw_storage_is_resolved(storage):
    template, mine, _, _ = storage
    assert confine_source("3010000.01", str(mine / "sub-01"), template) == os.path.realpath(mine / "sub-01")
    assert confine_source("3010000.01", str(mine / "link-in"), template) == os.path.realpath(mine / "sub-01")


def test_sources_outside_are_refused(storage):
    template, mine, other, tmp = storage
    cases = [
        (str(other / "sub-09"), "outside the raw storage"),             # another project's path
        (str(mine / ".." / ".." / "3055000.01"), "'..'"),               # ..
        (str(mine / "link-out"), "symbolic link"),                       # symlink out
        (str(mine / "link-other"), "symbolic link"),                     # symlink into another project
        ("/root", "outside the raw storage"),                            # a root-only place
        ("relative/path", "absolute"),
        (str(mine / "missing"), "does not exist"),
    ]
    for src, match in cases:
        with pytest.raises(UserError, match=match):
            confine_source("3010000.01", src, template)
    with pytest.raises(UserError, match="project number"):
        confine_source("../x", str(mine), template)
