"""Clean room operators that drive Kubernetes and the Spark Operator: submit the attested run and
wait for it (deferred), then report its structured summary (see docs/cleanroom.md).

Nothing from inside the clean room reaches Airflow but ``summary.json``, which the job writes for
every outcome: status, counts, timings, an error code and a message written by the job's own
code. The driver's log is never read into a task log: a refused or failed query reports its code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from include.cleanroom.errors import CleanroomUserError
from sensitive_data.common.errors import SensitiveDataOperatorMixin, translate_errors
from sensitive_data.operators.cleanroom_base import governance, local_dir, runtime_setup, spark


def read_summary(output: str | Path) -> dict | None:
    try:
        summary = json.loads((Path(output) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


class CleanroomSparkRunOperator(SensitiveDataOperatorMixin, BaseOperator):
    """Submit the run as a SparkApplication through the Spark Operator and wait for it, deferred.
    The application is named after the query document and the DAG run, so a retried task finds the
    application it submitted instead of starting a second one.

    :param contract_id: the contract
    :param document_id: the query document
    :param runnable: the check task's result (``.output``): datasets and the governance key
    :param output_dir: where results go (``<output>/<contract>/<document>/<application>``)
    :param run_timeout_minutes: how long the run may take; it is deleted (stopped) after that
    :param poll_interval: seconds between status polls
    """

    template_fields: Sequence[str] = (
        "contract_id",
        "document_id",
        "runnable",
        "output_dir",
        "run_timeout_minutes",
        "kubernetes_conn_id",
        "cleanroom_governance_conn_id",
    )
    ui_color = "#e8fde9"

    def __init__(
        self,
        *,
        contract_id: str,
        document_id: str,
        runnable: Any,
        output_dir: str = "",
        kubernetes_conn_id: str = "cleanroom_k8s",
        cleanroom_governance_conn_id: str = "cleanroom_governance",
        run_timeout_minutes: Any = 360,
        poll_interval: float = 3.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.contract_id = contract_id
        self.document_id = document_id
        self.runnable = runnable
        self.output_dir = output_dir
        self.kubernetes_conn_id = kubernetes_conn_id
        self.cleanroom_governance_conn_id = cleanroom_governance_conn_id
        self.run_timeout_minutes = run_timeout_minutes
        self.poll_interval = poll_interval

    def execute(self, context) -> dict[str, Any]:
        from include.cleanroom.manifest import TERMINAL_STATES, application_state
        from include.cleanroom.names import application_name
        from sensitive_data.triggers.cleanroom import SparkApplicationTrigger

        runnable = self.runnable or {}
        with translate_errors():
            if not runnable.get("datasets") or runnable.get("document_id") != self.document_id:
                raise CleanroomUserError("no runnable datasets: the check task has not passed for this document")
            k8s = spark(self.kubernetes_conn_id)
            name = application_name(self.document_id, context["dag_run"].run_id)
            output = local_dir(self.output_dir, "output") / self.contract_id / self.document_id / name
            output.parent.mkdir(parents=True, exist_ok=True)
            run = {
                "documentId": self.document_id,
                "runId": name,
                "datasets": runnable["datasets"],
                "output": str(output),
            }
            manifest = runtime_setup(
                k8s, governance(self.cleanroom_governance_conn_id), self.contract_id, runnable["governance_key"], run
            )
            obj, created = k8s.submit(manifest)
        namespace = manifest["metadata"]["namespace"]
        state = application_state(obj)
        self.log.info(
            "SparkApplication %s/%s %s (state %s)",
            namespace,
            name,
            "submitted" if created else "already submitted by an earlier try",
            state or "new",
        )
        self.application = {"name": name, "namespace": namespace, "output": str(output)}
        if state in TERMINAL_STATES:
            return self.execute_complete(context, {"status": "done", "name": name, "state": state})
        self.defer(
            trigger=SparkApplicationTrigger(name, namespace, self.kubernetes_conn_id, self.poll_interval),
            method_name="execute_complete",
            kwargs={"application": self.application},
            timeout=timedelta(minutes=float(self.run_timeout_minutes)),
        )

    def deadline_message(self) -> str:
        return (
            f"the SparkApplication of query document {self.document_id} did not finish within "
            f"{self.run_timeout_minutes} minutes; it was deleted"
        )

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context):
        """At the deadline of the deferred wait, delete (stop) the application before failing."""
        from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason

        from include.cleanroom.names import application_name

        timed_out = (next_kwargs or {}).get("error") == TriggerFailureReason.TRIGGER_TIMEOUT
        if next_method == TRIGGER_FAIL_REPR and timed_out:
            with translate_errors("stopping the run at its deadline"):
                k8s = spark(self.kubernetes_conn_id)
                k8s.delete_application(application_name(self.document_id, context["dag_run"].run_id),
                                       k8s.cleanroom_namespace)
        return super().resume_execution(next_method, next_kwargs, context)

    def execute_complete(self, context, event: dict[str, Any], application: dict | None = None) -> dict[str, Any]:
        app = application or getattr(self, "application", {})
        name, namespace, output = app.get("name"), app.get("namespace"), app.get("output")
        if self.raise_for_event(event).get("status") == "missing":
            raise AirflowException(f"SparkApplication {name} disappeared before it finished")
        summary = read_summary(output) or {}
        if summary.get("status") == "completed" and event.get("state") == "COMPLETED":
            self.log.info("SparkApplication %s completed", name)
            return {"application": name, "namespace": namespace, "output": output, "summary": summary}
        if summary.get("status") in ("refused", "failed"):
            raise AirflowFailException(
                f"the clean room {summary['status']} the run: [{summary.get('code')}] {summary.get('message')}"
            )
        raise AirflowFailException(
            f"SparkApplication {name} ended {event.get('state')} without a summary from the clean room "
            "(the job did not start, or was stopped)"
        )


class CleanroomCollectResultOperator(SensitiveDataOperatorMixin, BaseOperator):
    """The run's summary (rows, columns, suppressed groups, privacy budget spent, timings) in the
    task log; the result stays in the output directory for the result recipient.

    :param run: the run task's result (``.output``)
    """

    template_fields: Sequence[str] = ("run",)
    ui_color = "#e8fde9"

    def __init__(self, *, run: Any, **kwargs):
        super().__init__(**kwargs)
        self.run = run

    def execute(self, context) -> dict[str, Any]:
        run = self.run or {}
        summary = read_summary(run.get("output") or "") if run.get("output") else None
        if not summary or summary.get("status") != "completed":
            raise AirflowFailException("no completed run: the run task has not succeeded")
        result = Path(run["output"]) / "result.csv"
        self.log.info(
            "result: %d row(s) x %d column(s) in %s; %d group(s) below k suppressed; epsilon spent %s; %.1f s",
            summary["rows"],
            len(summary["columns"]),
            result,
            summary["suppressedGroups"],
            summary.get("epsilon") or 0,
            (summary.get("timings") or {}).get("totalSeconds", 0.0),
        )
        return {
            "result_path": str(result),
            "rows": summary["rows"],
            "columns": summary["columns"],
            "suppressed_groups": summary["suppressedGroups"],
            "epsilon": summary.get("epsilon") or {},
            "application": run["application"],
        }
