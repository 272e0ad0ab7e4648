"""HPCS secure data preparation: encrypt a staged input, key to Vault, archive to the supercomputer."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from include.hpcs.names import SECRET_NAME_MAX, SECRET_NAME_PATTERN, UNIX_NAME_PATTERN
from sensitive_data.common.retries import RETRIES_SERVICE, default_args
from sensitive_data.operators.hpcs import (
    HpcsInfoFileOperator,
    HpcsPrepareOperator,
    HpcsShipOperator,
    HpcsSpireAgentSetupOperator,
    HpcsSpireAgentTeardownOperator,
    HpcsSvidOperator,
    HpcsVaultKeyOperator,
    HpcsWorkloadsOperator,
)

# Every task of a run must run where the run's SPIRE agent and scratch directory are: the operators
# take their queue from the Airflow configuration [sensitive_data] hpcs_queue (served by one worker).
SCRATCH = "{{ var.value.get('hpcs_scratch_dir', '') }}"
STAGING = "{{ var.value.get('hpcs_staging_dir', '') }}"
# The JWT audience: Variable hpcs_svid_audience, else the hpcs_server connection's svid_audience extra.
AUDIENCE = "{{ var.value.get('hpcs_svid_audience', '') }}"


def _names(title: str, what: str, min_items: int = 0) -> Param:
    return Param(
        [],
        type="array",
        items={"type": "string", "pattern": UNIX_NAME_PATTERN},
        minItems=min_items,
        uniqueItems=True,
        title=title,
        description=f"{what} (one per line). Names as HPCS accepts them: lowercase letter or '_' first, "
        "then lowercase letters, digits, '_' or '-', at most 32 characters.",
    )


with DAG(
    dag_id="hpcs_data_preparation",
    description="HPCS secure data preparation: encrypt an input, key to Vault for chosen workloads, ship it",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    tags=["hpcs", "sensitive-data", "supercomputer"],
    default_args=default_args(RETRIES_SERVICE, owner="hpcs"),
    params={
        "input_path": Param(
            type="string",
            minLength=1,
            title="Input",
            description="Directory or file in the staging area (absolute, or relative to the staging area).",
        ),
        "secret_name": Param(
            "",
            type="string",
            pattern=SECRET_NAME_PATTERN,
            maxLength=SECRET_NAME_MAX,
            title="Secret name",
            description="Name of the key in Vault and of the archive; empty: the input's base name. "
            "Characters A-Z a-z 0-9 . _ -. A name belongs to the user whose run first prepared it and its "
            "key is never replaced: a new preparation needs a new name.",
        ),
        "users": _names("Users", "UNIX users that may read the key on the compute nodes"),
        "groups": _names(
            "Groups", "UNIX groups that may read the key on the compute nodes (users or groups: at least one)"
        ),
        "compute_nodes": _names(
            "Compute nodes", "Compute nodes on which those users/groups may read the key", min_items=1
        ),
        "path_at_rest": Param(
            type="string",
            pattern="^/",
            minLength=2,
            title="Path at rest",
            description="Absolute directory on the supercomputer where the archive and its info file go.",
        ),
        "compression": Param(
            "gzip",
            type="string",
            enum=["gzip", "none"],
            title="Compression",
            description="gzip the tar archive before encryption (gzip), or not (none: for compressed data).",
        ),
        "hpcs_server_conn_id": Param(
            "hpcs_server",
            type="string",
            minLength=1,
            title="HPCS server connection",
            description="Airflow connection of the HPCS server.",
        ),
        "spire_agent_conn_id": Param(
            "spire_agent",
            type="string",
            minLength=1,
            title="SPIRE agent connection",
            description="Airflow connection with the SPIRE server address and the agent command template.",
        ),
        "vault_conn_id": Param(
            "vault",
            type="string",
            minLength=1,
            title="Vault connection",
            description="Airflow connection of the Vault the key is written to.",
        ),
        "supercomputer_sftp_conn_id": Param(
            "supercomputer_sftp",
            type="string",
            minLength=1,
            title="Supercomputer SFTP connection",
            description="Airflow SFTP connection of the supercomputer.",
        ),
    },
    doc_md="""
### HPCS secure data preparation

Follows HPCS's documented sequence, one task per step, all on the worker where the run's SPIRE
agent runs:

1. **setup_spire_agent** (setup) - join token from the HPCS server, SPIRE agent started for this run.
2. **prepare** - the secret name is claimed for the user who triggered the run (refused if another
   user or another run has it), then the input streamed into tar (gzip or not), Crypt4GH-encrypted
   for a fresh X25519 key pair, sha512 computed on the fly; the private key only in a 0600 file.
3. **svid** - a JWT-SVID from the agent's Workload API.
4. **vault** - JWT login (role `client_<id>`), `{"key": ...}` written to `kv/client_<id>/<secret_name>`
   with check-and-set (never over an existing key), then the Vault token is revoked.
5. **workloads** - only the secret's owner: the HPCS server registers compute nodes x users/groups.
6. **info_file** - `<secret_name>.info.yaml` (path_at_rest, secret_path, access_role, checksum, spiffeID).
7. **ship** - archive then info file over SFTP to `path_at_rest`: resumable, size-verified.
8. **teardown_spire_agent** (teardown, runs even after a failure) - agent stopped, key material deleted.

Bad input fails at once with a message saying what to fix; unreachable services are retried.
A re-run (clear) reuses an unchanged archive (its key is already in Vault) and resumes shipping;
a changed archive is refused. See docs/hpcs.md and docs/security.md.
""",
) as dag:
    setup = HpcsSpireAgentSetupOperator(
        task_id="setup_spire_agent",
        scratch_dir=SCRATCH,
        hpcs_server_conn_id="{{ params.hpcs_server_conn_id }}",
        spire_agent_conn_id="{{ params.spire_agent_conn_id }}",
    )
    prepare = HpcsPrepareOperator(
        task_id="prepare",
        scratch_dir=SCRATCH,
        input_path="{{ params.input_path }}",
        secret_name="{{ params.secret_name }}",  # noqa: S106 - a name, not a secret
        compression="{{ params.compression }}",
        staging_dir=STAGING,
        setup=setup.output,
        retries=1,
    )
    svid = HpcsSvidOperator(
        task_id="svid",
        scratch_dir=SCRATCH,
        audience=AUDIENCE,
        hpcs_server_conn_id="{{ params.hpcs_server_conn_id }}",
        setup=setup.output,
    )
    vault = HpcsVaultKeyOperator(
        task_id="vault",
        scratch_dir=SCRATCH,
        vault_conn_id="{{ params.vault_conn_id }}",
        setup=setup.output,
        prepared=prepare.output,
        svid=svid.output,
    )
    workloads = HpcsWorkloadsOperator(
        task_id="workloads",
        scratch_dir=SCRATCH,
        setup=setup.output,
        prepared=prepare.output,
        svid=svid.output,
        users="{{ params.users }}",
        groups="{{ params.groups }}",
        compute_nodes="{{ params.compute_nodes }}",
        hpcs_server_conn_id="{{ params.hpcs_server_conn_id }}",
    )
    info_file = HpcsInfoFileOperator(
        task_id="info_file",
        scratch_dir=SCRATCH,
        path_at_rest="{{ params.path_at_rest }}",
        setup=setup.output,
        prepared=prepare.output,
        workloads=workloads.output,
    )
    ship = HpcsShipOperator(
        task_id="ship",
        scratch_dir=SCRATCH,
        path_at_rest="{{ params.path_at_rest }}",
        sftp_conn_id="{{ params.supercomputer_sftp_conn_id }}",
        setup=setup.output,
        prepared=prepare.output,
        info=info_file.output,
    )
    teardown = HpcsSpireAgentTeardownOperator(
        task_id="teardown_spire_agent",
        scratch_dir=SCRATCH,
        spire_agent_conn_id="{{ params.spire_agent_conn_id }}",
        setup=setup.output,
        retries=1,
    )

    setup >> prepare >> svid >> vault >> workloads >> info_file >> ship >> teardown.as_teardown(setups=setup)
