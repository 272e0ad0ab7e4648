"""DCCN data streamer: raw data of a lab session into the project's DAC collection."""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param

from include.stager.pipeline import RUN_ID_KEY, STREAMER_DAG_ID, TRANSFER_DAG_ID
from sensitive_data.common.retries import RETRIES_NONE, default_args
from sensitive_data.operators.stager import StagerStreamerJobOperator

DOC = """
### Data streamer

Triggered by the lab data streamer with `{projectId, srcPath, modality}`: resolves the project's
DAC collection (static map of the stager settings) and submits a sealed `data_stager_transfer` job
as the streamer service account (connection `stager_streamer`, an unprivileged allow-listed POSIX
user) from `srcPath` into `irods:<collection>/raw/...`, with per-modality timeouts (MRI 10800/600 s,
MEG 3600/1800 s, OPM 1800/600 s). `srcPath` must lie inside the project's own raw storage
(setting `streamer_source`, default `/project/{projectId}/raw`), symbolic links resolved.
Not retried (a lab streamer submits again); the transfer job itself is retried as any other.
"""

with DAG(
    dag_id=STREAMER_DAG_ID,
    doc_md=DOC,
    schedule=None,
    catchup=False,
    tags=["stager"],
    default_args=default_args(RETRIES_NONE, owner="data-stager"),
    params={
        "projectId": Param(type="string", pattern=r"^\d{7}\.\d{2}$",
                           description="Project number, e.g. 3010000.01."),
        "srcPath": Param(type="string", minLength=1,
                         description="Absolute path of the raw data on project storage."),
        "modality": Param(type="string", enum=["MRI", "MEG", "OPM"], description="Lab modality."),
    },
) as dag:
    job = StagerStreamerJobOperator(task_id="resolve")
    # the sealed job is the run's conf, and its run id the one it was sealed for
    TriggerDagRunOperator(task_id="submit", trigger_dag_id=TRANSFER_DAG_ID, conf=job.output,
                          trigger_run_id=job.output[RUN_ID_KEY])
