"""The outside systems ``platform_healthcheck`` checks, one task each.

Each pipeline adds the systems it depends on. ``probe`` is ``"hook"`` (build the hook registered
for the connection's type and call its ``test_connection()``) or the dotted path of a callable
``probe(conn_id) -> str`` (see ``sensitive_data.hooks.health``) that returns what it saw and raises
with a plain explanation on failure.
"""

from __future__ import annotations

from dataclasses import dataclass

_P = "sensitive_data.hooks.health."


@dataclass(frozen=True)
class HealthCheck:
    name: str  # the task id: the system, in the domain's words
    conn_id: str
    system: str  # what an operator reads in the message
    probe: str = "hook"
    hint: str = ""  # what to do when it fails


HEALTHCHECKS: tuple[HealthCheck, ...] = (
    HealthCheck("s3_archive", "s3_archive", "S3 object store", _P + "probe_s3",
                "start the S3 endpoint (locally `make up` runs moto's S3 server); check endpoint_url and keys"),
    # EGA ingestion
    HealthCheck("lega_broker", "lega_broker", "EGA message broker (RabbitMQ)", _P + "probe_lega_broker",
                "start RabbitMQ (`rabbitmq-server -detached`); check host, port, vhost and credentials"),
    HealthCheck("lega_db", "lega_db", "EGA database (PostgreSQL)", _P + "probe_lega_db",
                "start PostgreSQL; check host, port, user and that the database exists"),
    HealthCheck("lega_inbox", "lega_inbox", "EGA inbox", _P + "probe_lega_storage",
                "check the inbox backend and its root directory, bucket or SFTP connection"),
    HealthCheck("lega_archive", "lega_archive", "EGA archive", _P + "probe_lega_storage",
                "check the archive backend; a POSIX root must exist and be writable by the workers"),
    HealthCheck("lega_keys", "lega_keys", "EGA archive keys", _P + "probe_lega_keys",
                "check the private key paths (or Vault path) and the passphrase of the lega_keys connection"),
    # HPCS secure data preparation
    HealthCheck("vault", "vault", "HashiCorp Vault", _P + "probe_vault",
                "start Vault (locally `make up`), check its address and that it is unsealed"),
    HealthCheck("hpcs_server", "hpcs_server", "HPCS server", _P + "probe_hpcs_server",
                "start the HPCS server and check its URL"),
    HealthCheck("spire_server", "spire_agent", "SPIRE server", _P + "probe_tcp",
                "start the SPIRE server and check server_address/server_port of the spire_agent connection"),
    HealthCheck("supercomputer_sftp", "supercomputer_sftp", "supercomputer SFTP", "hook",
                "check the SFTP host, port, login and key_file; the key must be in the remote authorized_keys"),
    # Data stager
    HealthCheck("irods", "irods", "iRODS data repository", _P + "probe_irods",
                "check the iRODS host, port and zone, and the stager_streamer service account"),
    HealthCheck("stager_webdav", "stager_webdav", "repository WebDAV", _P + "probe_webdav",
                "check the WebDAV URL and the stager_streamer service account"),
    HealthCheck("stager_keys", "stager_keys", "stager credential key", _P + "probe_stager_keys",
                "check the private_key_file of the stager_keys connection"),
    HealthCheck("smtp", "smtp_default", "mail server (SMTP)", "hook",
                "check the SMTP host, port and TLS settings of smtp_default"),
    # Confidential clean room
    HealthCheck("cleanroom_governance", "cleanroom_governance", "clean room governance service (CGS)",
                _P + "probe_cleanroom_governance",
                "check the CGS client's address and this member's token in the cleanroom_governance connection"),
    HealthCheck("cleanroom_k8s", "cleanroom_k8s", "Kubernetes with the Spark Operator", _P + "probe_cleanroom_k8s",
                "check kube_config and namespace of cleanroom_k8s; its service account must list sparkapplications"),
)
