"""Operator logic that needs no service: error translation, host check, JWT refresh, reuse rules, teardown.

The operators take the results of the steps before them as arguments (``.output`` XComArgs in the
DAG); here they are given as plain dicts."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from include.hpcs.errors import HpcsConfigError, HpcsError, HpcsTransientError, HpcsUserError
from include.hpcs.scratch import RunScratch, write_private_file
from sensitive_data.common.errors import TransientFailure
from sensitive_data.operators import hpcs as ops

CLIENT_ID = "c0ffee123"
SETUP = {"client_id": CLIENT_ID}


def ctx(run_id="r1", user="alice"):
    dag_run = SimpleNamespace(dag_id="hpcs_data_preparation", run_id=run_id, triggering_user_name=user)
    return {"dag_run": dag_run}


@pytest.mark.parametrize(
    "error,expected",
    [
        (HpcsUserError("bad"), AirflowFailException),
        (HpcsConfigError("conf"), AirflowFailException),
        (HpcsTransientError("down"), TransientFailure),
    ],
)
def test_error_translation(tmp_path, monkeypatch, error, expected):
    """An operator's errors go through the shared translation: user and configuration errors fail
    without retry, transient ones are retried, with the error's message and hint, nothing chained."""
    from sensitive_data.hooks.hpcs_server import HpcsServerHook

    def fail(self):
        raise error

    monkeypatch.setattr(HpcsServerHook, "register_client", fail)
    op = ops.HpcsSpireAgentSetupOperator(task_id="setup_spire_agent", scratch_dir=str(tmp_path))
    with pytest.raises(expected) as err:
        op.execute(ctx())
    assert str(error) in str(err.value) and "What to do:" in str(err.value)
    assert err.value.__cause__ is None
    if expected is not AirflowFailException:
        assert not isinstance(err.value, AirflowFailException)


def test_unclassified_hpcs_error_fails_like_a_bug(tmp_path):
    """A bare HpcsError (a step that has not run) keeps its type and traceback: standard retries."""
    op = ops.HpcsPrepareOperator(task_id="prepare", input_path="ds", staging_dir=str(tmp_path),
                                 scratch_dir=str(tmp_path / "s"), setup={})
    (tmp_path / "ds").mkdir()
    with pytest.raises(HpcsError, match="'setup_spire_agent' task has not run") as err:
        op.execute(ctx())
    assert not isinstance(err.value, AirflowException)


def test_host_check(tmp_path):
    op = ops.HpcsSvidOperator(task_id="svid", scratch_dir=str(tmp_path), setup={"host": "elsewhere.invalid"})
    with pytest.raises(AirflowFailException, match="route every HPCS task to one worker"):
        op.check_host()
    import socket

    op.setup = {"host": socket.gethostname()}
    assert op.check_host()["host"]
    op.setup = None  # a teardown whose setup failed: no host to check
    assert op.check_host() == {}


def test_current_jwt_refreshes_when_expiring(tmp_path, monkeypatch):
    from sensitive_data.hooks.hpcs_spire import JwtSvid, SpireAgentHook

    op = ops.HpcsVaultKeyOperator(task_id="vault", scratch_dir=str(tmp_path))
    path = write_private_file(tmp_path / "jwt", b"old-token")
    svid = {
        "svid_path": str(path),
        "expires_at": time.time() + 3600,
        "audience": "TESTING",
        "socket_path": "/s",
    }
    assert op.current_jwt(svid) == "old-token"
    calls = []
    monkeypatch.setattr(
        SpireAgentHook,
        "fetch_jwt_svid",
        staticmethod(lambda sock, aud, timeout=30: calls.append((sock, aud)) or JwtSvid("new-token", "spiffe://x", 9)),
    )
    svid["expires_at"] = time.time() + 10
    assert op.current_jwt(svid) == "new-token"
    assert calls == [("/s", "TESTING")]
    assert path.read_bytes() == b"new-token"


def test_teardown_keeps_unshipped_archive(tmp_path):
    scratch = RunScratch(tmp_path, "hpcs_data_preparation", "r1").ensure()
    write_private_file(scratch.private_key_path, b"k")
    (scratch.archive_dir / "a.c4gh").write_bytes(b"x")
    scratch.update_state(archive={"sha512": "s1"})
    op = ops.HpcsSpireAgentTeardownOperator(task_id="t", scratch_dir=str(tmp_path), setup=SETUP)
    out = op.execute(ctx())
    assert out["key_material_removed"] == ["archive.sec"] and out["archive_removed"] is False
    assert (scratch.archive_dir / "a.c4gh").exists()
    scratch.update_state(shipped={"sha512": "s1"})
    assert op.execute(ctx())["archive_removed"] is True
    assert not scratch.archive_dir.exists()


def test_prepare_reuse_rules(tmp_path):
    staging = tmp_path / "staging"
    (staging / "ds").mkdir(parents=True)
    (staging / "ds" / "f").write_text("data")
    scratch_root = tmp_path / "scratch"
    op = ops.HpcsPrepareOperator(
        task_id="prepare", input_path="ds", staging_dir=str(staging), scratch_dir=str(scratch_root), setup=SETUP
    )
    first = op.execute(ctx())
    assert first["reused"] is False and first["secret_name"] == "ds"
    assert "private_key_path" in first and "PRIVATE" not in str(first)
    again = op.execute(ctx())
    assert again["reused"] is True and again["sha512"] == first["sha512"]
    # key deleted by a teardown before it reached Vault: a new archive and key
    scratch = RunScratch(scratch_root, "hpcs_data_preparation", "r1")
    scratch.remove_key_material()
    third = op.execute(ctx())
    assert third["reused"] is False and third["sha512"] != first["sha512"]
    # key in Vault already, then deleted: reuse
    scratch.update_state(vault={"sha512": third["sha512"]})
    scratch.remove_key_material()
    assert op.execute(ctx())["reused"] is True
    # other compression: new archive
    op.compression = "none"
    assert op.execute(ctx())["reused"] is False


def test_prepare_user_errors(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    for kwargs, message in [
        ({"input_path": ""}, "input_path is empty"),
        ({"input_path": "nope"}, "does not exist"),
        ({"input_path": "/etc"}, "outside the staging area"),
        ({"input_path": "x", "compression": "zstd"}, "compression"),
    ]:
        (staging / "x").mkdir(exist_ok=True)
        (staging / "x" / "f").write_text("1")
        op = ops.HpcsPrepareOperator(
            task_id="prepare", staging_dir=str(staging), scratch_dir=str(tmp_path / "s"), setup=SETUP, **kwargs
        )
        with pytest.raises(AirflowFailException, match=message):
            op.execute(ctx())


def test_info_file_requires_absolute_remote_dir(tmp_path):
    op = ops.HpcsInfoFileOperator(
        task_id="info_file",
        path_at_rest="relative",
        scratch_dir=str(tmp_path),
        setup=SETUP,
        prepared={
            "archive_name": "a",
            "size": 1,
            "sha512": "a" * 128,
            "compression": "gzip",
            "secret_name": "a",
        },
        workloads={
            "secrets_path": "client_x/a",
            "user_role": "client_x-a",
            "spiffeID": "spiffe://t/c/x/s/a",
        },
    )
    with pytest.raises(AirflowFailException, match="absolute"):
        op.execute(ctx())
    op.path_at_rest = "/rest"
    out = op.execute(ctx())
    assert out["info"]["info"]["path_at_rest"] == "/rest/a"


def test_prepare_refuses_a_secret_name_of_another_user_or_run(tmp_path):
    staging = tmp_path / "staging"
    (staging / "ds").mkdir(parents=True)
    (staging / "ds" / "f").write_text("data")
    op = ops.HpcsPrepareOperator(task_id="prepare", input_path="ds", staging_dir=str(staging),
                                 scratch_dir=str(tmp_path / "scratch"), setup=SETUP)
    op.execute(ctx(user="alice"))
    with pytest.raises(AirflowFailException, match="belongs to another Airflow user"):
        op.execute(ctx(run_id="r2", user="bob"))
    with pytest.raises(AirflowFailException, match="already prepared by your run hpcs_data_preparation/r1"):
        op.execute(ctx(run_id="r2", user="alice"))
    # nothing of the refused runs was made
    assert not (tmp_path / "scratch" / "hpcs_data_preparation" / "r2" / "archive").exists() or not any(
        (tmp_path / "scratch" / "hpcs_data_preparation" / "r2" / "archive").iterdir())
    with pytest.raises(AirflowFailException, match="no triggering user"):
        op.execute(ctx(run_id="r3", user=None))


class FakeVaultHook:
    """Records what the operator asks of Vault; ``existing`` is the secret already at the path."""

    calls: list = []
    existing: bool = False
    fail_write: bool = False

    def __init__(self, conn_id):
        self.kv_mount = "kv"

    def login_jwt(self, role, jwt):
        FakeVaultHook.calls.append(("login", role))

    def write_secret(self, path, secret, cas=None):
        from sensitive_data.hooks.hpcs_vault import HpcsSecretExists

        FakeVaultHook.calls.append(("write", path, cas))
        if FakeVaultHook.fail_write:
            raise HpcsTransientError("vault down")
        if FakeVaultHook.existing and cas == 0:
            raise HpcsSecretExists("exists")
        FakeVaultHook.existing = True
        return 1

    def revoke_self(self):
        FakeVaultHook.calls.append(("revoke",))
        return True


@pytest.fixture
def vault_step(tmp_path, monkeypatch):
    from sensitive_data.hooks import hpcs_vault

    monkeypatch.setattr(hpcs_vault, "HpcsVaultHook", FakeVaultHook)
    FakeVaultHook.calls, FakeVaultHook.existing, FakeVaultHook.fail_write = [], False, False
    root = tmp_path / "scratch"
    key = write_private_file(tmp_path / "k", b"-----BEGIN PRIVATE KEY-----x")
    jwt = write_private_file(tmp_path / "jwt", b"jwt")

    def run(sha="a" * 128, run_id="r1", user="alice", claim=True):
        if claim:
            ops.SecretOwners(root).claim(CLIENT_ID, "ds", user, f"hpcs_data_preparation/{run_id}")
        return ops.HpcsVaultKeyOperator(
            task_id="vault",
            scratch_dir=str(root),
            setup=SETUP,
            prepared={"secret_name": "ds", "sha512": sha, "private_key_path": str(key)},
            svid={"svid_path": str(jwt)},
        ).execute(ctx(run_id=run_id, user=user))

    return run


def test_vault_writes_once_with_cas_and_revokes(vault_step):
    assert vault_step()["written"] is True
    assert FakeVaultHook.calls == [("login", f"client_{CLIENT_ID}"), ("write", f"client_{CLIENT_ID}/ds", 0),
                                   ("revoke",)]


def test_vault_retry_with_the_unchanged_archive_finds_its_key(vault_step, tmp_path):
    vault_step()
    # the scratch state is lost (a crash right after the write): the retry meets check-and-set
    (tmp_path / "scratch" / "hpcs_data_preparation" / "r1" / "state.json").unlink()
    FakeVaultHook.calls.clear()
    again = vault_step()
    assert again["written"] is False
    assert FakeVaultHook.calls[-1] == ("revoke",)


def test_vault_refuses_a_changed_archive_before_logging_in(vault_step):
    vault_step()
    FakeVaultHook.calls.clear()
    with pytest.raises(AirflowFailException, match="changed since its key was written"):
        vault_step(sha="b" * 128)
    assert FakeVaultHook.calls == []


def test_vault_refuses_a_key_it_did_not_record(vault_step):
    FakeVaultHook.existing = True  # written before ownership records, or by someone else
    with pytest.raises(AirflowFailException, match="never replaced"):
        vault_step()
    assert FakeVaultHook.calls[-1] == ("revoke",)


def test_vault_token_revoked_when_the_write_fails(vault_step):
    FakeVaultHook.fail_write = True
    with pytest.raises(TransientFailure):
        vault_step()
    assert FakeVaultHook.calls[-1] == ("revoke",)


def test_vault_refuses_another_users_run(vault_step):
    vault_step()
    with pytest.raises(AirflowFailException, match="belongs to another Airflow user"):
        vault_step(run_id="r2", user="bob", claim=False)


def test_workloads_refused_for_another_user(tmp_path, monkeypatch):
    from sensitive_data.hooks import hpcs_server

    called = []
    monkeypatch.setattr(hpcs_server.HpcsServerHook, "create_workloads", lambda *a, **k: called.append(k))
    ops.SecretOwners(tmp_path).claim(CLIENT_ID, "ds", "alice", "hpcs_data_preparation/r1")
    op = ops.HpcsWorkloadsOperator(task_id="workloads", users=["bob"], compute_nodes=["cn01"],
                                   scratch_dir=str(tmp_path), setup=SETUP, prepared={"secret_name": "ds"},
                                   svid={"svid_path": "/nonexistent"})
    with pytest.raises(AirflowFailException, match="belongs to another Airflow user"):
        op.execute(ctx(run_id="r2", user="bob"))
    assert called == []


def test_prepare_reports_progress_with_the_common_reporter(tmp_path, monkeypatch):
    """The prepare step counts with include.common.progress: bytes of the total, entries, rate, and
    a final "done" line; the files/directories/links and encrypted size follow in the log."""
    from include.common.progress import ProgressReporter

    lines = []

    class Recording(ProgressReporter):
        def __init__(self, what, **kwargs):
            assert kwargs["interval"] == 5.0
            super().__init__(what, **{**kwargs, "interval": 0.0, "emit": lines.append})

    monkeypatch.setattr(ops, "ProgressReporter", Recording)
    staging = tmp_path / "staging"
    (staging / "ds").mkdir(parents=True)
    (staging / "ds" / "f").write_bytes(b"x" * 300_000)
    op = ops.HpcsPrepareOperator(task_id="prepare", input_path="ds", staging_dir=str(staging),
                                 scratch_dir=str(tmp_path / "s"), setup=SETUP)
    out = op.execute(ctx())
    assert lines and lines[-1].startswith("prepare ds: ") and "done in" in lines[-1]
    assert "files" in lines[-1] and "MB/s" in lines[-1]
    assert out["files"] == 1
