"""The outside systems ``platform_healthcheck`` checks, one task each.

Each pipeline adds the systems it depends on. ``probe`` is ``"hook"`` (build the hook registered
for the connection's type and call its ``test_connection()``) or the dotted path of a callable
``probe(conn_id) -> str`` that returns what it saw and raises with a plain explanation on failure.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HealthCheck:
    name: str  # the task id: the system, in the domain's words
    conn_id: str
    system: str  # what an operator reads in the message
    probe: str = "hook"
    hint: str = ""  # what to do when it fails


HEALTHCHECKS: tuple[HealthCheck, ...] = (
    HealthCheck(
        name="s3_archive", conn_id="s3_archive", system="S3 object store",
        probe="sensitive_data.hooks.health.probe_s3",
        hint="start the S3 endpoint (locally: `make up` runs moto's S3 server) and check the connection's "
             "endpoint_url and keys",
    ),
)
