"""Operators of the HPCS secure data preparation (see docs/hpcs.md).

Each step of HPCS's documented sequence is one thin operator over ``include.hpcs`` and the
``hpcs*`` hooks. They share the run's scratch directory (``include.hpcs.scratch.RunScratch``) on
the worker where the SPIRE agent runs; only paths to secret files and non-secret facts go
through XCom, and each operator takes the results of the steps before it as arguments (the DAG
passes ``.output`` XComArgs: ``setup``, ``prepared``, ``svid``, ``workloads``, ``info``). Errors
are translated by the shared core (``sensitive_data.common.errors.translate_errors``): bad input
or configuration fails without retry (``AirflowFailException``), transient failures raise
``TransientFailure`` for a retry with backoff, a bare ``HpcsError`` fails like a bug (the task's
standard retries).

Who asks is the run's ``triggering_user_name`` as the API server recorded it (never the conf): the
first user to prepare a secret name owns it (``include.hpcs.ownership``); every secret a step
handles (join token, JWT-SVID, Vault token, the archive key) is registered with the secrets masker.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.log import mask_secret

from include.common.progress import ProgressReporter
from include.hpcs.archive import KeyPair, prepare_archive, scan_input
from include.hpcs.errors import HpcsError, HpcsUserError
from include.hpcs.info import DatasetInfo, info_file_name
from include.hpcs.names import default_secret_name, validate_access, validate_secret_name
from include.hpcs.ownership import SecretOwners
from include.hpcs.scratch import RunScratch, read_private_file, write_private_file
from sensitive_data.common.errors import SensitiveDataOperatorMixin, translate_errors


def mask_pem(pem: str) -> None:
    """Register a PEM text with the secrets masker: whole, and each key line (a log may split it)."""
    mask_secret(pem)
    for line in pem.splitlines():
        if line.strip() and not line.startswith("-----"):
            mask_secret(line.strip())


QUEUE_SECTION = "sensitive_data"
QUEUE_KEY = "hpcs_queue"


def hpcs_queue() -> str:
    """The Celery queue of every HPCS task: Airflow configuration ``[sensitive_data] hpcs_queue``
    (environment ``AIRFLOW__SENSITIVE_DATA__HPCS_QUEUE``), else ``[operators] default_queue``.

    Every task of a run must run where the run's SPIRE agent and scratch directory are, so a
    deployment with several workers names a queue that one worker (host) serves. Airflow needs an
    operator's ``queue`` when the DAG is parsed (the scheduler routes from the serialized DAG), so
    this is read when the operator is built, from configuration, never from the DAG file.
    """
    from airflow.sdk.configuration import conf

    return conf.get(QUEUE_SECTION, QUEUE_KEY, fallback="") or conf.get("operators", "default_queue", fallback="default")


def default_local_dir(name: str) -> str:
    local = os.environ.get("SDP_LOCAL")
    base = Path(local) if local else Path(tempfile.gettempdir()) / "sdp"
    return str(base / name)


class HpcsBaseOperator(SensitiveDataOperatorMixin, BaseOperator):
    """Shared by the HPCS operators: the run's scratch directory and the check that the task runs on
    the worker that holds it.

    :param scratch_dir: root of the scratch directories (default ``$SDP_LOCAL/hpcs/scratch``)
    :param socket_dir: where the SPIRE agent's short-named directory goes (default: under the
        scratch directory when the socket path fits, else the system temporary directory)
    :param setup: what the setup task returned (``setup.output``: client id, socket, host);
        ``None`` in a teardown whose setup failed
    :param queue: default :func:`hpcs_queue` (Airflow configuration ``[sensitive_data] hpcs_queue``)
    """

    template_fields: Sequence[str] = ("scratch_dir", "socket_dir", "setup")
    ui_color = "#f3e8fd"

    def __init__(self, *, scratch_dir: str = "", socket_dir: str = "", setup: Any = None, **kwargs):
        if not kwargs.get("queue") and not (kwargs.get("default_args") or {}).get("queue"):
            kwargs["queue"] = hpcs_queue()  # a queue given to the task or in default_args wins
        super().__init__(**kwargs)
        self.scratch_dir = scratch_dir
        self.socket_dir = socket_dir
        self.setup = setup

    def scratch(self, context) -> RunScratch:
        root = self.scratch_dir or default_local_dir("hpcs/scratch")
        dag_run = context["dag_run"]
        return RunScratch(root, dag_run.dag_id, dag_run.run_id, socket_root=self.socket_dir or None)

    def owners(self) -> SecretOwners:
        return SecretOwners(self.scratch_dir or default_local_dir("hpcs/scratch"))

    @staticmethod
    def caller(context) -> tuple[str, str]:
        """(the Airflow user who triggered the run, as the API server recorded it; ``dag_id/run_id``)."""
        dag_run = context["dag_run"]
        return str(getattr(dag_run, "triggering_user_name", None) or ""), f"{dag_run.dag_id}/{dag_run.run_id}"

    def current_jwt(self, svid: dict[str, Any], margin: float = 60.0) -> str:
        """The run's JWT-SVID from its 0600 file, fetched again from the agent when it expires
        within ``margin`` seconds (a retry may come long after the ``svid`` task)."""
        from sensitive_data.hooks.hpcs_spire import SpireAgentHook

        if not svid.get("svid_path"):
            raise HpcsError("no JWT-SVID: the 'svid' task has not run")
        if svid.get("expires_at") and float(svid["expires_at"]) - time.time() < margin and svid.get("socket_path"):
            self.log.info("the JWT-SVID expires within %.0fs: fetching a new one", margin)
            fresh = SpireAgentHook.fetch_jwt_svid(svid["socket_path"], svid.get("audience") or "vault", timeout=30)
            write_private_file(svid["svid_path"], fresh.token.encode())
            return fresh.token
        jwt = read_private_file(svid["svid_path"]).decode()
        mask_secret(jwt)
        return jwt

    def check_host(self) -> dict[str, Any]:
        """The setup's result; fail when this task does not run on the worker of the run's agent."""
        setup = self.setup or {}
        here = socket.gethostname()
        if setup.get("host") and setup["host"] != here:
            raise AirflowFailException(
                f"this task runs on {here} but the run's SPIRE agent and scratch directory are on "
                f"{setup['host']}: route every HPCS task to one worker (the 'queue' setting)"
            )
        return setup


class HpcsSpireAgentSetupOperator(HpcsBaseOperator):
    """Setup: get a join token from the HPCS server, start the run's SPIRE agent, wait for its
    Workload API socket. The join token is used once and never stored or logged.

    :param hpcs_server_conn_id: HPCS server connection
    :param spire_agent_conn_id: SPIRE agent connection (command template, trust domain, server)
    """

    template_fields: Sequence[str] = (
        *HpcsBaseOperator.template_fields,
        "hpcs_server_conn_id",
        "spire_agent_conn_id",
    )

    def __init__(self, *, hpcs_server_conn_id: str = "hpcs_server", spire_agent_conn_id: str = "spire_agent", **kwargs):
        super().__init__(**kwargs)
        self.hpcs_server_conn_id = hpcs_server_conn_id
        self.spire_agent_conn_id = spire_agent_conn_id

    @translate_errors()
    def execute(self, context) -> dict[str, Any]:
        from sensitive_data.hooks.hpcs_server import HpcsServerHook
        from sensitive_data.hooks.hpcs_spire import SpireAgentHook

        scratch = self.scratch(context).ensure()
        agent = SpireAgentHook(self.spire_agent_conn_id)
        registration = HpcsServerHook(self.hpcs_server_conn_id).register_client()
        self.log.info("HPCS client %s registered (agent %s)", registration.client_id, registration.spiffe_id)
        try:
            agent.start(scratch, registration.token)
            agent.wait_ready(scratch)
        except BaseException:
            agent.stop(scratch)
            scratch.remove_agent_dir()
            raise
        scratch.update_state(client_id=registration.client_id, agent_spiffe_id=registration.spiffe_id)
        self.log.info("SPIRE agent ready, Workload API at %s", scratch.socket_path)
        return {
            "client_id": registration.client_id,
            "agent_spiffe_id": registration.spiffe_id,
            "socket_path": str(scratch.socket_path),
            "scratch_dir": str(scratch.dir),
            "host": socket.gethostname(),
        }


class HpcsSpireAgentTeardownOperator(HpcsBaseOperator):
    """Teardown: stop the run's SPIRE agent and delete the run's key material (private key, JWT-SVID),
    whatever happened to the other tasks. The encrypted archive is removed once it has been shipped
    (kept otherwise, so that a re-run resumes).

    :param spire_agent_conn_id: SPIRE agent connection
    :param keep_archive: keep the local archive even after a verified shipment
    """

    template_fields: Sequence[str] = (*HpcsBaseOperator.template_fields, "spire_agent_conn_id")

    def __init__(self, *, spire_agent_conn_id: str = "spire_agent", keep_archive: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.spire_agent_conn_id = spire_agent_conn_id
        self.keep_archive = keep_archive

    @translate_errors()
    def execute(self, context) -> dict[str, Any]:
        from sensitive_data.hooks.hpcs_spire import SpireAgentHook

        self.check_host()
        scratch = self.scratch(context)
        stopped = SpireAgentHook(self.spire_agent_conn_id).stop(scratch)
        scratch.remove_agent_dir()
        removed = scratch.remove_key_material()
        state = scratch.load_state()
        archive = state.get("archive") or {}
        shipped = bool(archive) and (state.get("shipped") or {}).get("sha512") == archive.get("sha512")
        archive_removed = False
        if shipped and not self.keep_archive and scratch.archive_dir.exists():
            scratch.remove_archive()
            archive_removed = True
        self.log.info(
            "SPIRE agent %s; key material removed: %s; archive %s",
            "stopped" if stopped else "was not running",
            ", ".join(removed) or "none left",
            "removed (shipped)" if archive_removed else "kept",
        )
        return {"agent_stopped": stopped, "key_material_removed": removed, "archive_removed": archive_removed}


class HpcsPrepareOperator(HpcsBaseOperator):
    """Stream the input into a tar archive (gzip or none), Crypt4GH-encrypted for a fresh X25519 key
    pair, with the sha512 of the encrypted archive computed on the fly.

    The private key is written only to a 0600 file in the run's scratch directory. A re-run
    whose input is unchanged reuses the archive and key (so no new key version is written to Vault).

    :param input_path: directory or file, absolute or relative to the staging area
    :param secret_name: name of the secret (default: the input's base name)
    :param compression: ``gzip`` or ``none``
    :param staging_dir: the staging area (default ``$SDP_LOCAL/staging``); the input must lie in it
    """

    template_fields: Sequence[str] = (
        *HpcsBaseOperator.template_fields,
        "input_path",
        "secret_name",
        "compression",
        "staging_dir",
    )

    def __init__(
        self,
        *,
        input_path: str,
        secret_name: str = "",
        compression: str = "gzip",
        staging_dir: str = "",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_path = input_path
        self.secret_name = secret_name
        self.compression = compression
        self.staging_dir = staging_dir

    @translate_errors()
    def execute(self, context) -> dict[str, Any]:
        setup = self.check_host()
        scratch = self.scratch(context).ensure()
        staging = Path(self.staging_dir or default_local_dir("staging"))
        if not self.input_path:
            raise HpcsUserError("input_path is empty: give a directory or file in the staging area")
        path = Path(self.input_path)
        path = path if path.is_absolute() else staging / path
        secret_name = validate_secret_name(self.secret_name or default_secret_name(str(path)))
        if self.compression not in ("gzip", "none"):
            raise HpcsUserError(f"compression must be 'gzip' or 'none', not {self.compression!r}")
        # before anything is read or written: this user's run owns the name, or is refused
        owner, run = self.caller(context)
        if not setup.get("client_id"):
            raise HpcsError("no HPCS client id: the 'setup_spire_agent' task has not run")
        self.owners().claim(setup["client_id"], secret_name, owner, run)
        self.log.info("secret_name %s is this run's (prepared for %s)", secret_name, owner)
        state = scratch.load_state()
        # an earlier attempt left an archive: scan first, to reuse it if the input is unchanged;
        # otherwise prepare_archive scans in a thread beside the archive
        summary = scan_input(path, staging) if state.get("archive") else None
        reused = self._reusable(scratch, state, summary.fingerprint, secret_name) if summary else None
        if reused is not None:
            self.log.info(
                "input unchanged since an earlier attempt of this run: reusing archive %s (sha512 %s...)",
                reused["name"],
                reused["sha512"][:16],
            )
            archive = reused
        else:
            keys = KeyPair.generate()
            mask_pem(keys.private_pem().decode())
            write_private_file(scratch.private_key_path, keys.private_pem())
            write_private_file(scratch.public_key_path, keys.public_pem())
            progress = ProgressReporter(
                f"prepare {secret_name}",
                bytes_total=summary.bytes if summary else None,
                interval=5.0,
                emit=self.log.info,
            )

            def report(files: int, done: int, total: int) -> None:
                # the total is known once the input scan (in a thread beside the archive) is done
                progress.update(bytes_done=done, files_done=files, bytes_total=total or None)

            result = prepare_archive(
                path,
                scratch.archive_dir,
                keys.public,
                secret_name=secret_name,
                compression=self.compression,
                staging_root=staging,
                summary=summary,
                progress=report,
            )
            progress.update(bytes_done=result.tar_bytes, files_done=result.files + result.dirs + result.links)
            progress.finish()
            self.log.info(
                "archive %s: %d files, %d directories, %d links -> %d bytes encrypted",
                result.name,
                result.files,
                result.dirs,
                result.links,
                result.size,
            )
            archive = result.to_dict() | {"secret_name": secret_name}
            scratch.update_state(archive=archive, vault=None, shipped=None)
        if archive["outside_links"]:
            self.log.warning(
                "%d symbolic link(s) point outside the input; they are stored as links and not followed: %s",
                len(archive["outside_links"]),
                ", ".join(archive["outside_links"][:10]),
            )
        return {
            "archive_path": archive["path"],
            "archive_name": archive["name"],
            "size": archive["size"],
            "sha512": archive["sha512"],
            "compression": archive["compression"],
            "secret_name": secret_name,
            "files": archive["files"],
            "dirs": archive["dirs"],
            "links": archive["links"],
            "outside_links": archive["outside_links"],
            "private_key_path": str(scratch.private_key_path),
            "reused": reused is not None,
        }

    def _reusable(self, scratch: RunScratch, state: dict, fingerprint: str, secret_name: str) -> dict | None:
        archive = state.get("archive")
        if not archive or archive.get("input_fingerprint") != fingerprint:
            return None
        if archive.get("compression") != self.compression or archive.get("secret_name") != secret_name:
            return None
        sha = archive.get("sha512")
        on_disk = Path(archive["path"]).is_file() and Path(archive["path"]).stat().st_size == archive["size"]
        shipped = (state.get("shipped") or {}).get("sha512") == sha
        key_kept = scratch.private_key_path.is_file()
        in_vault = (state.get("vault") or {}).get("sha512") == sha
        if (on_disk or shipped) and (key_kept or in_vault):
            return archive
        return None


class HpcsSvidOperator(HpcsBaseOperator):
    """Fetch a JWT-SVID for ``audience`` from the run's SPIRE agent (spiffe package); the token goes
    to a 0600 file in the scratch directory, only its path and SPIFFE ID to XCom.

    :param audience: the JWT audience Vault's JWT roles are bound to (default: the ``svid_audience``
        extra of the HPCS server connection, else ``vault``)
    :param hpcs_server_conn_id: HPCS server connection (for the default audience)
    :param fetch_timeout: seconds to wait for the agent to have the workload's entry
    """

    template_fields: Sequence[str] = (*HpcsBaseOperator.template_fields, "audience", "hpcs_server_conn_id")

    def __init__(
        self,
        *,
        audience: str = "",
        hpcs_server_conn_id: str = "hpcs_server",
        fetch_timeout: float = 60.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.audience = audience
        self.hpcs_server_conn_id = hpcs_server_conn_id
        self.fetch_timeout = fetch_timeout

    @translate_errors()
    def execute(self, context) -> dict[str, Any]:
        from sensitive_data.hooks.hpcs_server import HpcsServerHook
        from sensitive_data.hooks.hpcs_spire import SpireAgentHook

        setup = self.check_host()
        scratch = self.scratch(context)
        socket_path = setup.get("socket_path") or str(scratch.socket_path)
        audience = self.audience or HpcsServerHook(self.hpcs_server_conn_id).svid_audience
        svid = SpireAgentHook.fetch_jwt_svid(socket_path, audience, timeout=self.fetch_timeout)
        write_private_file(scratch.svid_path, svid.token.encode())
        self.log.info("JWT-SVID for %s (audience %s) fetched", svid.spiffe_id, audience)
        return {
            "svid_path": str(scratch.svid_path),
            "spiffe_id": svid.spiffe_id,
            "expires_at": svid.expiry,
            "audience": audience,
            "socket_path": str(socket_path),
        }


class HpcsVaultKeyOperator(HpcsBaseOperator):
    """Log into Vault with the JWT-SVID (role ``client_<id>``) and write ``{"key": <private key>}`` to
    KV v2 at ``client_<id>/<secret_name>``, then revoke the token (also when the write failed).

    The write is check-and-set ``0`` (only if no key is there): a key is never replaced. The
    secret's ownership record binds it to this archive's sha512 first, so a retry of the owning run
    with the unchanged archive finds its key there and goes on; a changed archive, another run or
    another user is refused (``include.hpcs.ownership``).

    :param prepared: what the prepare task returned (``prepare.output``)
    :param svid: what the svid task returned (``svid.output``)
    :param vault_conn_id: Vault connection
    """

    template_fields: Sequence[str] = (*HpcsBaseOperator.template_fields, "prepared", "svid", "vault_conn_id")

    def __init__(self, *, prepared: Any = None, svid: Any = None, vault_conn_id: str = "vault", **kwargs):
        super().__init__(**kwargs)
        self.prepared = prepared
        self.svid = svid
        self.vault_conn_id = vault_conn_id

    @translate_errors()
    def execute(self, context) -> dict[str, Any]:
        from sensitive_data.hooks.hpcs_vault import HpcsSecretExists, HpcsVaultHook

        setup = self.check_host()
        scratch = self.scratch(context)
        prepared, svid = self.prepared or {}, self.svid or {}
        client_id = setup["client_id"]
        secret_path = f"client_{client_id}/{prepared['secret_name']}"
        state = scratch.load_state()
        done = state.get("vault") or {}
        if done.get("sha512") == prepared["sha512"] and done.get("secret_path") == secret_path:
            self.log.info(
                "the key of this archive is already in Vault at %s (version %s): not writing it again",
                secret_path,
                done.get("version"),
            )
            return {"secret_path": secret_path, "version": done.get("version"), "written": False}
        owner, run = self.caller(context)
        newly_bound = self.owners().bind_archive(client_id, prepared["secret_name"], owner, run, prepared["sha512"])
        try:
            key = read_private_file(prepared["private_key_path"]).decode()
        except FileNotFoundError:
            raise HpcsError(
                "the private key of this archive is gone (teardown ran): clear the "
                "'prepare' task so that a new archive and key are made"
            ) from None
        mask_pem(key)
        jwt = self.current_jwt(svid)
        hook = HpcsVaultHook(self.vault_conn_id)
        hook.login_jwt(role=f"client_{client_id}", jwt=jwt)
        try:
            version = hook.write_secret(secret_path, {"key": key}, cas=0)
            written = True
        except HpcsSecretExists:
            if newly_bound:  # a key this platform did not record for this archive
                raise HpcsUserError(
                    f"a key already exists in Vault at {secret_path} that no run recorded for this "
                    "archive: it is never replaced; choose another secret_name"
                ) from None
            version, written = None, False  # an earlier attempt of this run wrote this archive's key
        finally:
            hook.revoke_self()  # the token's one job is done, whatever happened
        del key, jwt
        scratch.update_state(vault={"sha512": prepared["sha512"], "secret_path": secret_path, "version": version})
        if written:
            self.log.info("key written to Vault at %s/%s (version %s); token revoked", hook.kv_mount, secret_path,
                          version)
        else:
            self.log.info("the key of this archive was already in Vault at %s (an earlier attempt); token revoked",
                          secret_path)
        return {"secret_path": secret_path, "version": version, "written": written}


class HpcsWorkloadsOperator(HpcsBaseOperator):
    """Ask the HPCS server to create the workloads (compute nodes x users/groups) that may read the key.

    :param prepared: what the prepare task returned (``prepare.output``)
    :param svid: what the svid task returned (``svid.output``)
    :param hpcs_server_conn_id: HPCS server connection
    :param users: UNIX users allowed on the compute nodes
    :param groups: UNIX groups allowed on the compute nodes
    :param compute_nodes: compute node names
    """

    template_fields: Sequence[str] = (
        *HpcsBaseOperator.template_fields,
        "prepared",
        "svid",
        "users",
        "groups",
        "compute_nodes",
        "hpcs_server_conn_id",
    )

    def __init__(
        self,
        *,
        users: Any = None,
        groups: Any = None,
        compute_nodes: Any = None,
        prepared: Any = None,
        svid: Any = None,
        hpcs_server_conn_id: str = "hpcs_server",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.prepared = prepared
        self.svid = svid
        self.users = users
        self.groups = groups
        self.compute_nodes = compute_nodes
        self.hpcs_server_conn_id = hpcs_server_conn_id

    @translate_errors()
    def execute(self, context) -> dict[str, Any]:
        from sensitive_data.hooks.hpcs_server import HpcsServerHook

        setup = self.check_host()
        scratch = self.scratch(context)
        prepared, svid = self.prepared or {}, self.svid or {}
        users, groups, nodes = validate_access(self.users, self.groups, self.compute_nodes)
        owner, run = self.caller(context)  # only the secret's owner may add workloads to it
        self.owners().check(str(setup.get("client_id") or ""), prepared["secret_name"], owner, run)
        jwt = self.current_jwt(svid)
        answer = HpcsServerHook(self.hpcs_server_conn_id).create_workloads(
            jwt=jwt, secret=prepared["secret_name"], users=users, groups=groups, compute_nodes=nodes
        )
        del jwt
        scratch.update_state(workloads={k: answer.get(k) for k in ("spiffeID", "secrets_path", "user_role")})
        self.log.info(
            "workloads %s may read %s with role %s on %s",
            answer["spiffeID"],
            answer["secrets_path"],
            answer["user_role"],
            ", ".join(nodes),
        )
        return answer


class HpcsInfoFileOperator(HpcsBaseOperator):
    """Write ``<secret_name>.info.yaml`` (HPCS's format plus archive name and size) beside the archive.

    :param path_at_rest: the remote directory the archive is shipped to
    :param prepared: what the prepare task returned (``prepare.output``)
    :param workloads: what the workloads task returned (``workloads.output``)
    """

    template_fields: Sequence[str] = (*HpcsBaseOperator.template_fields, "path_at_rest", "prepared", "workloads")

    def __init__(self, *, path_at_rest: str, prepared: Any = None, workloads: Any = None, **kwargs):
        super().__init__(**kwargs)
        self.path_at_rest = path_at_rest
        self.prepared = prepared
        self.workloads = workloads

    @translate_errors()
    def execute(self, context) -> dict[str, Any]:
        self.check_host()
        scratch = self.scratch(context).ensure()
        prepared, workloads = self.prepared or {}, self.workloads or {}
        if not self.path_at_rest or not self.path_at_rest.startswith("/"):
            raise HpcsUserError(f"path_at_rest must be an absolute remote directory, not {self.path_at_rest!r}")
        info = DatasetInfo.build(
            remote_dir=self.path_at_rest,
            archive=prepared["archive_name"],
            size=prepared["size"],
            checksum=prepared["sha512"],
            secret_path=workloads["secrets_path"],
            access_role=workloads["user_role"],
            spiffe_id=workloads["spiffeID"],
            compression=prepared["compression"],
        )
        path = scratch.archive_dir / info_file_name(prepared["secret_name"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(info.to_yaml())
        os.replace(tmp, path)
        self.log.info("info file %s written", path.name)
        return {"info_path": str(path), "info_name": path.name, "info": {"info": info.__dict__}}


class HpcsShipOperator(HpcsBaseOperator):
    """Ship the archive, then its info file, to ``path_at_rest`` over SFTP: resumable (``.part`` then
    rename), size-verified, with progress in the task log.

    :param sftp_conn_id: the supercomputer's SFTP connection
    :param path_at_rest: remote directory
    :param progress_interval: seconds between progress lines
    :param prepared: what the prepare task returned (``prepare.output``)
    :param info: what the info_file task returned (``info_file.output``)
    """

    template_fields: Sequence[str] = (
        *HpcsBaseOperator.template_fields,
        "path_at_rest",
        "sftp_conn_id",
        "prepared",
        "info",
    )

    def __init__(
        self,
        *,
        path_at_rest: str,
        sftp_conn_id: str = "supercomputer_sftp",
        progress_interval: float = 5.0,
        prepared: Any = None,
        info: Any = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.prepared = prepared
        self.info = info
        self.path_at_rest = path_at_rest
        self.sftp_conn_id = sftp_conn_id
        self.progress_interval = progress_interval

    @translate_errors()
    def execute(self, context) -> dict[str, Any]:
        from sensitive_data.hooks.hpcs_sftp import SupercomputerSftpHook

        self.check_host()
        scratch = self.scratch(context)
        prepared, info = self.prepared or {}, self.info or {}
        state = scratch.load_state()
        sha = prepared["sha512"]
        if not Path(prepared["archive_path"]).is_file():
            if (state.get("shipped") or {}).get("sha512") == sha:
                self.log.info("archive %s was already shipped by an earlier attempt", prepared["archive_name"])
                return dict(state["shipped"])
            raise HpcsError(
                f"archive {prepared['archive_name']} is missing from the scratch directory: "
                "clear the 'prepare' task to make it again"
            )
        hook = SupercomputerSftpHook(self.sftp_conn_id)
        progress = ProgressReporter(
            f"shipping {prepared['archive_name']}",
            bytes_total=prepared["size"],
            interval=self.progress_interval,
            emit=self.log.info,
        )
        archive = hook.ship(
            prepared["archive_path"], self.path_at_rest, prepared["archive_name"], progress=progress
        )
        progress.finish()
        if archive.resumed_from:
            self.log.info("shipping %s resumed from byte %d", prepared["archive_name"], archive.resumed_from)
        info_result = hook.ship(info["info_path"], self.path_at_rest, info["info_name"])
        result = {"archive": archive.to_dict(), "info": info_result.to_dict(), "sha512": sha}
        scratch.update_state(shipped=result)
        return result
