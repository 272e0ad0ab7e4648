"""The devstack stand-ins and how to start them.

One entry per stand-in. ``argv`` is formatted with the stack's variables: every ``SDP_*`` port
variable below (``{SDP_VAULT_PORT}`` ...), ``{state}`` (the stand-in's own state directory),
``{local}`` (the stack's ``.local`` directory) and ``{python}`` (the interpreter). The same
variables fill the ``${NAME:-default}`` placeholders of ``airflow_settings.yaml``, so the local
stack (fixed default ports) and the tests (free ports) share one source of connection settings.

A stand-in is ready when its TCP port accepts connections (``ready_port``) or when the file
``ready_file`` exists (formatted like argv).

No secret goes on a command line (``ps`` shows every argv to every local user): a stand-in gets its
tokens and passwords through ``env`` (formatted like argv) or a 0600 file; ``secrets`` lists the
development secrets a stand-in is configured with, for the tests that look for leaks
(tests/security/test_platform_attacks.py reads ``/proc/*/cmdline`` of the running stack).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Service:
    name: str
    argv: tuple[str, ...]
    port_var: str | None = None  # SDP_* variable holding its main TCP port
    default_port: int | None = None
    ready_file: str | None = None
    needs: tuple[str, ...] = ()  # names of stand-ins that must be up first
    extra_vars: dict[str, int] = field(default_factory=dict)  # more SDP_* ports it owns
    # SDP_* names (queues, exchanges) it shares with the pipelines: the defaults on the local stack,
    # made unique per stack in tests so that stacks sharing one broker do not take each other's messages;
    # a name ending in _DB is a PostgreSQL database, dropped when such a test stack stops
    names: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # environment of the process (its secrets go here)
    secrets: tuple[str, ...] = ()  # development secrets it is configured with (never in argv)


SERVICES: dict[str, Service] = {}


def register(service: Service) -> Service:
    SERVICES[service.name] = service
    return service


# S3: moto's real S3 server (not a stand-in we wrote).
register(
    Service(
        name="s3",
        argv=("{python}", "-m", "moto.server", "-H", "127.0.0.1", "-p", "{SDP_S3_PORT}"),
        port_var="SDP_S3_PORT",
        default_port=9000,
    )
)


# Central EGA stand-in: declares CEGA's exchange and the node's queues, sends triggers, answers
# files.verified with accession ids (python -m devstack.cega --help). RabbitMQ is the machine's own.
register(
    Service(
        name="cega",
        argv=("{python}", "-m", "devstack.cega", "--port", "{SDP_CEGA_PORT}", "--state-dir", "{state}",
              "--exchange", "{SDP_LEGA_EXCHANGE}", "--files-queue", "{SDP_LEGA_FILES_QUEUE}",
              "--accession-queue", "{SDP_LEGA_ACCESSION_QUEUE}",
              "--inbox-dir", "{local}/lega/inbox"),
        port_var="SDP_CEGA_PORT",
        default_port=8091,
        env={"SDP_CEGA_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/%2F"},
        secrets=("guest:guest@",),
        names={"SDP_LEGA_EXCHANGE": "cega", "SDP_LEGA_FILES_QUEUE": "files",
               "SDP_LEGA_ACCESSION_QUEUE": "stableIDs", "SDP_LEGA_DEAD_LETTER_QUEUE": "dead_letters",
               "SDP_LEGA_DB": "lega"},
    )
)

# HPCS (CSC's secure data preparation): Vault, SPIRE server, HPCS server, the supercomputer's SFTP.
# The development root token is fixed so that airflow_settings.yaml can name it; it is given as real
# Vault's dev mode takes it (VAULT_DEV_ROOT_TOKEN_ID) and written to {local}/vault/root-token (0600)
# for the HPCS server stand-in.
register(
    Service(
        name="vault",
        argv=("{python}", "-m", "devstack.vault", "--port", "{SDP_VAULT_PORT}",
              "--root-token-file", "{state}/root-token", "--state-dir", "{state}"),
        port_var="SDP_VAULT_PORT",
        default_port=8200,
        env={"VAULT_DEV_ROOT_TOKEN_ID": "devstack-root-token"},
        secrets=("devstack-root-token",),
    )
)
register(
    Service(
        name="spire",
        argv=("{python}", "-m", "devstack.spire", "server", "run", "-bindAddress", "127.0.0.1",
              "-serverPort", "{SDP_SPIRE_PORT}", "-trustDomain", "hpcs.local", "-dataDir", "{state}",
              "-adminTokenFile", "{state}/admin-token"),
        port_var="SDP_SPIRE_PORT",
        default_port=8081,
    )
)
register(
    Service(
        name="hpcs_server",
        argv=("{python}", "-m", "devstack.hpcs_server", "--port", "{SDP_HPCS_PORT}",
              "--vault-url", "http://127.0.0.1:{SDP_VAULT_PORT}",
              "--vault-token-file", "{local}/vault/root-token",
              "--spire-url", "http://127.0.0.1:{SDP_SPIRE_PORT}",
              "--spire-admin-token-file", "{local}/spire/admin-token", "--trust-domain", "hpcs.local"),
        port_var="SDP_HPCS_PORT",
        default_port=10080,
        needs=("vault", "spire"),
    )
)
register(
    Service(
        name="supercomputer_sftp",
        argv=("{python}", "-m", "devstack.sftp", "--port", "{SDP_SUPERCOMPUTER_SFTP_PORT}",
              "--root", "{state}/root", "--state-dir", "{state}"),
        port_var="SDP_SUPERCOMPUTER_SFTP_PORT",
        default_port=2222,
    )
)

# iRODS (the Radboud Data Repository for the data stager): our protocol stand-in. It also writes
# the stager's development RSA key pair into {local}/stager/keys (connection stager_keys).
register(
    Service(
        name="irods",
        argv=("{python}", "-m", "devstack.irods", "--port", "{SDP_IRODS_PORT}", "--state-dir", "{state}",
              "--zone", "nl.ru.donders", "--users-file", "{state}/users.json",
              "--keys-dir", "{local}/stager/keys"),
        port_var="SDP_IRODS_PORT",
        default_port=1247,
    )
)

# The repository's WebDAV door (real WsgiDAV), same users as the iRODS stand-in.
register(
    Service(
        name="webdav",
        argv=("{python}", "-m", "devstack.webdav", "--port", "{SDP_WEBDAV_PORT}", "--root", "{state}/root",
              "--users-file", "{local}/irods/users.json"),
        port_var="SDP_WEBDAV_PORT",
        default_port=8089,
        needs=("irods",),
    )
)

# SMTP catcher (aiosmtpd): mails stored under {state}/mails, listed over HTTP on SDP_SMTP_HTTP_PORT.
register(
    Service(
        name="smtp",
        argv=("{python}", "-m", "devstack.smtp", "--port", "{SDP_SMTP_PORT}", "--http-port",
              "{SDP_SMTP_HTTP_PORT}", "--state-dir", "{state}"),
        port_var="SDP_SMTP_PORT",
        default_port=1025,
        extra_vars={"SDP_SMTP_HTTP_PORT": 8025},
    )
)


# Confidential clean room (docs/cleanroom-standins.md): the Kubernetes API + Spark Operator stand-in
# (runs each SparkApplication with a local spark-submit; it is also the confidential node that signs
# attestation reports) and the clean room governance service (members: the analyst and two hospitals).
register(
    Service(
        name="k8s_spark",
        argv=("{python}", "-m", "devstack.k8s_spark", "--port", "{SDP_K8S_PORT}", "--state-dir", "{state}"),
        port_var="SDP_K8S_PORT",
        default_port=16443,
        env={"SDP_K8S_TOKENS": "devstack-k8s-token=system:serviceaccount:airflow:cleanroom-submitter@cleanroom"},
        secrets=("devstack-k8s-token",),
    )
)
register(
    Service(
        name="cleanroom_governance",
        argv=("{python}", "-m", "devstack.cleanroom_governance", "--port", "{SDP_CGS_PORT}", "--state-dir", "{state}",
              "--attestation-root-file", "{local}/k8s_spark/attestation-root.pub"),
        port_var="SDP_CGS_PORT",
        default_port=9290,
        env={"SDP_CGS_MEMBERS": "analyst=devstack-cgs-analyst hospital_a=devstack-cgs-hospital-a "
                                "hospital_b=devstack-cgs-hospital-b",
             # the hospitals' automation identities: powerless until the hospital registers a policy
             "SDP_CGS_AUTOMATION": "hospital_a=devstack-cgs-auto-hospital-a hospital_b=devstack-cgs-auto-hospital-b"},
        secrets=("devstack-cgs-analyst", "devstack-cgs-hospital-a", "devstack-cgs-hospital-b",
                 "devstack-cgs-auto-hospital-a", "devstack-cgs-auto-hospital-b"),
        needs=("k8s_spark",),
    )
)

# One-off preparation of the stack's local data, run (idempotently) after the stand-ins start and
# before Airflow does. Commands are formatted like argv. The EGA node's key pair is made by the
# project's own key tool, run as a program (devstack imports nothing from include/).
BOOTSTRAP: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("EGA inbox and archive directories", ("mkdir", "-p", "{local}/lega/inbox", "{local}/lega/archive")),
    # the development passphrase is the lega_keys connection's password in airflow_settings.yaml
    ("EGA node Crypt4GH key pair", ("env", "LEGA_KEY_PASSPHRASE=devstack-lega",
                                    "{python}", "-m", "include.ega.keygen", "{local}/lega/keys")),
)
