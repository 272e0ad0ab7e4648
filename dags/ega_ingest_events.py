"""EGA ingestion, event-driven: a message in the `files` queue starts a run within seconds."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher

from sensitive_data.common.retries import RETRIES_IO, default_args
from sensitive_data.operators.ega import drain_and_ingest, drain_params
from sensitive_data.triggers.amqp import AmqpMessageTrigger

files_queue = Asset(
    name="lega_files_queue",
    uri="amqp://lega_broker/files",
    watchers=[
        AssetWatcher(
            name="lega_files_watcher",
            trigger=AmqpMessageTrigger(lega_broker_conn_id="lega_broker", poll_interval=2.0, cooldown=20.0),
        )
    ],
)

with DAG(
    dag_id="ega_ingest_events",
    description="Ingests files as soon as Central EGA's trigger messages arrive (AMQP asset watcher)",
    schedule=[files_queue],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    tags=["ega", "ingestion", "event-driven"],
    default_args=default_args(RETRIES_IO, owner="ega"),
    params=drain_params(),
    doc_md="""
### EGA ingestion (event-driven)

An `AssetWatcher` runs `AmqpMessageTrigger` in the triggerer: when the `files` queue of
`lega_broker` holds messages, the asset `lega_files_queue` is updated and this DAG runs the same
steps as `ega_ingest` (the task group drain_and_ingest: drain, ingest_verify, accession). The
trigger only looks at the queue's depth; the messages are taken and acknowledged by `drain` once
recorded in the database.
""",
) as dag:
    drain_and_ingest()
