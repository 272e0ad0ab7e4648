"""EGA ingestion of one file, started by an operator from the UI or the REST API."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from sensitive_data.common.retries import RETRIES_IO, default_args
from sensitive_data.operators.ega import EgaAccessionOperator, EgaProcessOperator, EgaRegisterFileOperator

with DAG(
    dag_id="ega_ingest_file",
    description="Ingests one file of a user's inbox (operators' re-ingestion)",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=8,
    tags=["ega", "ingestion", "operations"],
    default_args=default_args(RETRIES_IO, owner="ega"),
    params={
        "user": Param(
            type="string",
            minLength=2,
            title="User",
            description="The submitter's user name: the owner of the inbox that holds the file.",
        ),
        "filepath": Param(
            type="string",
            minLength=2,
            title="File path",
            description="Path of the Crypt4GH file relative to the user's inbox (no leading '/', no '..').",
        ),
    },
    doc_md="""
### EGA ingestion of one file

For operators: ingest `filepath` from `user`'s inbox as if Central EGA had sent an ingest
message. A file already live for this user and path is taken up where it stands (nothing is
done twice); a file that ended in *error* is ingested again as a new file.
Steps: **register** (the file's record) → **ingest** (header to the database, body to the
archive) → **verify** (decrypt, checksums, `files.verified`) → **accession** (deferred until CEGA
answers; `files.completed`).
""",
) as dag:
    register = EgaRegisterFileOperator(task_id="register", user="{{ params.user }}", filepath="{{ params.filepath }}")
    ingest = EgaProcessOperator(task_id="ingest", file_ids=register.output, steps=["ingest"])
    verify = EgaProcessOperator(task_id="verify", file_ids=register.output, steps=["verify"], pool="ega_verify")
    accession = EgaAccessionOperator(task_id="accession", file_ids=register.output)
    register >> ingest >> verify >> accession
