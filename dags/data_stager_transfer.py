"""DCCN data stager: one transfer job between POSIX project storage and the data repository (iRODS)."""

from __future__ import annotations

from airflow.sdk import DAG, Param

from include.stager.pipeline import TRANSFER_DAG_ID, TRANSFER_TASK, VALIDATE_TASK
from sensitive_data.common.retries import RETRIES_TRANSFER, default_args
from sensitive_data.notifiers.stager import StagerNotifier
from sensitive_data.operators.stager import StagerTransferOperator, StagerValidateJobOperator

DOC = """
### Data stager transfer

A job of the DCCN data stager: a recursive sync between a POSIX path and an iRODS collection
(`irods:/<zone>/...`), run as `stagerUser`. Submit it through the stager API (`/stager/v1/job`),
which checks who may act, checks the credential, encrypts `drPass` for this job and seals the job
for this run and submitter. A run whose seal is missing, forged or does not match its conf (any
run created directly through `/api/v2`) fails in `validate` without retry, before any file is
touched; so does a `stagerUser` that is root, a system account or not allow-listed, and a `drPass`
encrypted for another job. Files already present with the
same size and SHA-256 are skipped, so a re-run resumes. User errors are not retried; other
failures are retried 4 times (30 s x attempt, `RETRIES_TRANSFER`; the first delay is the Airflow
setting `[sensitive_data] retry_delay_seconds` when set). The submitter gets `[OK] <title> completed` or
`[ALERT] <title> failed` by e-mail.
"""

with DAG(
    dag_id=TRANSFER_DAG_ID,
    doc_md=DOC,
    schedule=None,
    catchup=False,
    tags=["stager"],
    max_active_runs=16,
    # no execution_timeout: the job's own timeouts apply (0 = none)
    default_args=default_args(RETRIES_TRANSFER, owner="data-stager"),
    params={
        "title": Param("", type="string", description="Job title, used in the e-mail subject."),
        "stagerUser": Param(type="string", minLength=1,
                            description="POSIX user the transfer runs as (the submitter)."),
        "stagerUserEmail": Param("", type="string", description="Where the outcome is e-mailed."),
        "drUser": Param(type="string", minLength=1, description="Data repository (iRODS) user."),
        # The shape of base64 RSA ciphertext (>= 1024-bit key): a plaintext password is refused by
        # the REST API with 400 before the run (and its conf) is stored.
        "drPass": Param(type="string", minLength=172, pattern=r"^[A-Za-z0-9+/]+={0,2}$",
                        description="Repository password, RSA-encrypted with the stager key, base64."),
        "srcURL": Param(type="string", minLength=1,
                        description="Source: /posix/path or irods:/<zone>/collection."),
        "dstURL": Param(type="string", minLength=1,
                        description="Destination: irods:/<zone>/collection or /posix/path."),
        "timeout": Param(259200, type="integer", minimum=0,
                         description="Overall time limit in seconds (0 = none)."),
        "timeout_noprogress": Param(3600, type="integer", minimum=0,
                                    description="Seconds without any progress before giving up (0 = none)."),
        "submittedBy": Param("", type="string",
                             description="Set by the stager API: the Airflow user the job was sealed for."),
        "seal": Param("", type="string", description="Set by the stager API: the job's seal (HMAC-SHA256)."),
    },
    on_success_callback=StagerNotifier(failed=False),
    # the alert quotes the job status's error of these tasks (the last one that has one first)
    on_failure_callback=StagerNotifier(failed=True, error_tasks=(TRANSFER_TASK, VALIDATE_TASK)),
) as dag:
    validate = StagerValidateJobOperator(task_id=VALIDATE_TASK)
    transfer = StagerTransferOperator(task_id=TRANSFER_TASK)
    validate >> transfer
