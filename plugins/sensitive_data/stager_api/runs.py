"""Jobs as DAG runs of ``data_stager_transfer``: the Airflow metadata side of the stager API.

Everything that touches Airflow internals (DAG bag, DAG runs, task instances, XCom) is here,
behind the small :class:`RunStore` interface that the HTTP layer uses.

The job status (progress, last error) is XCom of the transfer DAG's tasks, read here from the
metadata database for any run, running or long finished. This code is not a task of that DAG, so
no ``XComArg`` can bring it the value: it names the tasks and keys by the constants of
``include.stager.pipeline``, the same ones the DAG file names its tasks with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from include.stager.pipeline import ERROR_KEY, PROGRESS_KEY, TRANSFER_DAG_ID, TRANSFER_TASK, VALIDATE_TASK

STATES = ("scheduled", "pending", "active", "retry", "completed", "archived")


@dataclass
class JobRecord:
    id: str
    owner: str | None
    state: str
    attempts: int
    conf: dict
    progress: dict = field(default_factory=lambda: {"total": 0, "processed": 0, "failed": 0})
    error: str | None = None
    created: datetime | None = None
    started: datetime | None = None
    updated: datetime | None = None
    finished: datetime | None = None


def stager_state(run_state: str, tis: dict[str, str | None]) -> str:
    """The stager's job state of a DAG run and the states of its tasks."""
    if run_state == "success":
        return "completed"
    if run_state == "failed":
        return "archived"
    if run_state == "queued":
        return "scheduled"
    transfer, validate = tis.get(TRANSFER_TASK), tis.get(VALIDATE_TASK)
    if transfer == "up_for_retry":
        return "retry"
    if "running" in (transfer, validate):
        return "active"
    return "pending"


def _xcom_value(raw):
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


class AirflowRunStore:
    """Jobs in Airflow's metadata database (used inside the API server)."""

    def _dag(self, session):
        from airflow.models.dagbag import DBDagBag

        dag = DBDagBag().get_latest_version_of_dag(TRANSFER_DAG_ID, session=session)
        if dag is None:
            raise LookupError(f"the DAG {TRANSFER_DAG_ID} is not loaded")
        return dag

    def create(self, conf: dict, owner: str, run_id: str) -> str:
        """Create the run ``run_id`` (the id its job was sealed for), triggered by ``owner``.

        ``triggering_user_name`` is what Airflow's own REST API records for the caller
        (``airflow/api_fastapi/core_api/routes/public/dag_run.py``: ``triggering_user_name=user.get_name()``);
        the transfer tasks compare it with the seal's submitter.
        """
        from airflow.api_fastapi.core_api.datamodels.dag_run import TriggerDAGRunPostBody
        from airflow.utils.session import create_session
        from airflow.utils.state import DagRunState
        from airflow.utils.types import DagRunTriggeredByType, DagRunType

        with create_session() as session:
            dag = self._dag(session)
            body = TriggerDAGRunPostBody(dag_run_id=run_id, conf=conf, logical_date=None)
            params = body.validate_context(dag)
            dag.create_dagrun(run_id=params["run_id"], logical_date=params["logical_date"],
                              data_interval=params["data_interval"], run_after=params["run_after"],
                              conf=params["conf"], run_type=DagRunType.MANUAL,
                              triggered_by=DagRunTriggeredByType.REST_API, triggering_user_name=owner,
                              state=DagRunState.QUEUED, session=session)
        return run_id

    def _record(self, session, run) -> JobRecord:
        from airflow.models.taskinstance import TaskInstance
        from airflow.models.xcom import XComModel
        from sqlalchemy import select

        tis = {ti.task_id: ti for ti in session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == TRANSFER_DAG_ID, TaskInstance.run_id == run.run_id))}
        xcoms = {(x.task_id, x.key): _xcom_value(x.value) for x in session.scalars(
            select(XComModel).where(XComModel.dag_id == TRANSFER_DAG_ID, XComModel.run_id == run.run_id,
                                    XComModel.key.in_((PROGRESS_KEY, ERROR_KEY, "return_value"))))}
        transfer = tis.get(TRANSFER_TASK)
        progress = xcoms.get((TRANSFER_TASK, PROGRESS_KEY)) or {}
        if not progress and isinstance(xcoms.get((TRANSFER_TASK, "return_value")), dict):
            progress = xcoms[(TRANSFER_TASK, "return_value")]
        error = xcoms.get((TRANSFER_TASK, ERROR_KEY)) or xcoms.get((VALIDATE_TASK, ERROR_KEY))
        ends = [ti.end_date for ti in tis.values() if ti.end_date]
        return JobRecord(
            id=run.run_id, owner=run.triggering_user_name,
            state=stager_state(str(run.state),
                               {k: (str(v.state) if v.state else None) for k, v in tis.items()}),
            attempts=(transfer.try_number if transfer and transfer.state else 0),
            conf=dict(run.conf or {}),
            progress={k: int(progress.get(k, 0)) for k in ("total", "processed", "failed")},
            error=error, created=run.queued_at or run.run_after, started=run.start_date,
            updated=max(ends) if ends else run.start_date, finished=run.end_date,
        )

    def list(self, owner: str | None) -> list[JobRecord]:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            q = select(DagRun).where(DagRun.dag_id == TRANSFER_DAG_ID)
            if owner is not None:
                q = q.where(DagRun.triggering_user_name == owner)
            return [self._record(session, run) for run in session.scalars(q.order_by(DagRun.id.desc()))]

    def get(self, job_id: str) -> JobRecord | None:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            run = session.scalar(select(DagRun).where(DagRun.dag_id == TRANSFER_DAG_ID, DagRun.run_id == job_id))
            return self._record(session, run) if run is not None else None

    def cancel(self, job_id: str) -> None:
        from airflow.api.common.mark_tasks import set_dag_run_state_to_failed
        from airflow.utils.session import create_session

        with create_session() as session:
            set_dag_run_state_to_failed(dag=self._dag(session), run_id=job_id, commit=True, session=session)

    def rerun(self, job_id: str) -> None:
        from airflow.utils.session import create_session

        with create_session() as session:
            self._dag(session).clear(run_id=job_id, task_ids=None, session=session)
