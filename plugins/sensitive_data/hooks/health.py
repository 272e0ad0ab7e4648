"""Health probes for systems whose stock hook has no usable ``test_connection``.

Each probe takes a connection id, makes one harmless call with the configured credentials,
returns what it saw, and raises with a plain reason on failure.
"""

from __future__ import annotations


def probe_s3(conn_id: str) -> str:
    """List buckets at the connection's endpoint (the stock test calls AWS STS, absent from S3-only endpoints)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # noqa: PLC0415 - keep DAG parsing light

    hook = S3Hook(aws_conn_id=conn_id)
    buckets = hook.get_conn().list_buckets().get("Buckets", [])
    endpoint = hook.conn_config.endpoint_url or "AWS"
    return f"{len(buckets)} bucket(s) visible at {endpoint}"
