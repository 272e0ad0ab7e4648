"""EGA ingestion, scheduled: drain Central EGA's messages and ingest the files in mapped batches."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from sensitive_data.common.retries import RETRIES_IO, default_args
from sensitive_data.operators.ega import SCHEDULED_SWITCH, drain_and_ingest, drain_params

with DAG(
    dag_id="ega_ingest",
    description="Drains CEGA's trigger messages and ingests the files in batches",
    schedule=pendulum.duration(minutes=5),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    tags=["ega", "ingestion"],
    default_args=default_args(RETRIES_IO, owner="ega"),
    params=drain_params(),
    doc_md="""
### EGA ingestion (scheduled)

Every 5 minutes (scheduled runs are skipped while the Airflow Variable `ega_ingest_scheduled` is
`false`; runs triggered by hand are not), the task group **drain_and_ingest**:

1. **drain** records up to *max_messages* messages from Central EGA (`files`: ingest, cancel,
   mapping; `stableIDs`: accessions) in the EGA database, then acknowledges them. Invalid
   messages go to the dead-letter queue. Files left half-way by an earlier run are taken up too.
2. **ingest_verify** (mapped, one task per batch): the Crypt4GH header goes to the database, the
   body to the archive; then the body is decrypted with the archive key and checksummed, and
   `files.verified` is sent to CEGA.
3. **accession** (mapped, deferrable): waits for CEGA's accession id, marks the file *ready*,
   sends `files.completed`.

The batches flow from **drain** to the mapped tasks as its XCom result (`drain.output`).
User errors are sent to CEGA (`files.error`) and fail the task without retry; transient errors are
retried with backoff (`RETRIES_IO`). See docs/ega.md.
""",
) as dag:
    drain_and_ingest(scheduled_switch=SCHEDULED_SWITCH)
