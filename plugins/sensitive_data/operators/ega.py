"""Operators of the EGA ingestion pipeline (the domain is in ``include.ega``).

- ``EgaDrainOperator``: record up to N messages from CEGA, return batches of file ids.
- ``EgaRegisterFileOperator``: record an operator's request for one file (UI / REST).
- ``EgaProcessOperator``: ingest and verify a batch of files (one task shares Airflow's per-task
  cost among many small files).
- ``EgaAccessionOperator``: apply CEGA's accession ids; waits deferred (no worker slot held).
- ``drain_and_ingest()``: the drain -> ingest_verify -> accession subgraph, as a TaskGroup.

Errors go through the shared translation (``sensitive_data.common.errors``): user errors are
reported to CEGA by the pipeline and fail the task without retry (after the other files of its
batch are done); a refused connection fails without retry; transient errors are retried with the
backoff of ``RETRIES_IO``. Every step is idempotent, so a retry redoes only what is missing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from include.ega.errors import InvalidMessage
from include.ega.messages import validate
from include.ega.pipeline import BatchResult, Pipeline, batches, drain
from sensitive_data.common.errors import SensitiveDataOperatorMixin, TransientFailure, translate_errors
from sensitive_data.common.retries import RETRIES_IO
from sensitive_data.common.settings import variable_bool


class _EgaOperator(SensitiveDataOperatorMixin, BaseOperator):
    """Shared by the EGA operators: the connections, the retry settings (``RETRIES_IO`` unless the
    DAG's ``default_args`` say otherwise) and ``_run``."""

    def __init__(
        self,
        *,
        lega_db_conn_id: str = "lega_db",
        lega_broker_conn_id: str = "lega_broker",
        lega_inbox_conn_id: str = "lega_inbox",
        lega_archive_conn_id: str = "lega_archive",
        lega_keys_conn_id: str = "lega_keys",
        **kwargs: Any,
    ):
        for name, value in RETRIES_IO.task_args().items():
            kwargs.setdefault(name, value)
        super().__init__(**kwargs)
        self.lega_db_conn_id = lega_db_conn_id
        self.lega_broker_conn_id = lega_broker_conn_id
        self.lega_inbox_conn_id = lega_inbox_conn_id
        self.lega_archive_conn_id = lega_archive_conn_id
        self.lega_keys_conn_id = lega_keys_conn_id

    def _run(self, fn, *, storage: bool = True, keys: bool = False):
        """Build the hooks (lazily, here, never in ``__init__``) and call ``fn(pipeline, broker)``;
        errors are translated by ``translate_errors``."""
        from sensitive_data.hooks.ega_broker import EgaBrokerHook
        from sensitive_data.hooks.ega_db import EgaDbHook
        from sensitive_data.hooks.ega_keys import EgaKeysHook
        from sensitive_data.hooks.ega_storage import EgaArchiveHook, EgaInboxHook

        inbox_hook = EgaInboxHook(self.lega_inbox_conn_id) if storage else None
        db = broker = None
        with translate_errors():
            try:
                db = EgaDbHook(self.lega_db_conn_id).get_database()
                broker = EgaBrokerHook(self.lega_broker_conn_id).get_conn()
                inbox = inbox_hook.get_conn() if inbox_hook else None
                archive = EgaArchiveHook(self.lega_archive_conn_id).get_conn() if storage else None
                private_keys = EgaKeysHook(self.lega_keys_conn_id).get_private_keys if keys else None
                return fn(Pipeline(db, inbox, archive, private_keys, broker.publish), broker)
            finally:
                if broker is not None:
                    broker.close()
                if db is not None:
                    db.close()
                if inbox_hook is not None:
                    inbox_hook.close()

    def _finish(self, result: BatchResult) -> dict:
        summary = {"done": result.done, "user_errors": result.user_errors, "transient": result.transient}
        for fid, status in result.done.items():
            self.log.info("file %s: %s", fid, status)
        if result.transient:
            raise TransientFailure(
                f"{len(result.transient)} file(s) hit a transient error and will be retried: {sorted(result.transient)}"
            )
        if result.user_errors:
            for fid, reason in result.user_errors.items():
                self.log.error("file %s rejected: %s", fid, reason)
            raise AirflowFailException(
                f"{len(result.user_errors)} file(s) rejected (reported to Central EGA): "
                + "; ".join(f"{k}: {v}" for k, v in result.user_errors.items())
            )
        return summary


class EgaDrainOperator(_EgaOperator):
    """Record up to ``max_messages`` of CEGA's messages and return the files to work on, in batches.

    :param max_messages: messages taken from each queue per run
    :param batch_size: files per mapped task downstream
    :param stale_after: seconds after which a file left half-way is taken up again
    :param scheduled_switch: an Airflow Variable (JSON ``true``/``false``, default true) read when a
        *scheduled* run starts: ``false`` skips the run (manual and event-driven runs go on), so
        that a deployment stops the timer without pausing the DAG. Unparsable: the task fails.
    """

    template_fields: Sequence[str] = ("max_messages", "batch_size")

    def __init__(
        self,
        *,
        max_messages: int | str = 100,
        batch_size: int | str = 10,
        stale_after: int = 600,
        scheduled_switch: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.max_messages = max_messages
        self.batch_size = batch_size
        self.stale_after = stale_after
        self.scheduled_switch = scheduled_switch

    def execute(self, context: Any) -> list[list[str]]:
        run = context.get("dag_run")
        run_type = getattr(run, "run_type", None)
        if self.scheduled_switch and getattr(run_type, "value", run_type) == "scheduled":
            with translate_errors():
                enabled = variable_bool(self.scheduled_switch, True)
            if not enabled:
                raise AirflowSkipException(f"scheduled draining is off (Variable {self.scheduled_switch!r} is false)")
        file_ids = self._run(lambda p, b: drain(p, b, int(self.max_messages), self.stale_after), storage=True)
        self.log.info("%d file(s) to work on", len(file_ids))
        return batches(file_ids, int(self.batch_size))


class EgaRegisterFileOperator(_EgaOperator):
    """Record an ingest request for one file, as a CEGA trigger would (re-ingestion by an operator).

    :param user: the inbox owner
    :param filepath: the path in the user's inbox
    """

    template_fields: Sequence[str] = ("user", "filepath")

    def __init__(self, *, user: str, filepath: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.user = user
        self.filepath = filepath

    def execute(self, context: Any) -> list[str]:
        message = {"type": "ingest", "user": self.user, "filepath": self.filepath}
        try:
            validate("ingestion-trigger", message)
        except InvalidMessage as exc:
            raise AirflowFailException(f"invalid request: {exc.reason}") from None
        correlation_id = str(uuid.uuid4())

        def register(pipeline: Pipeline, _broker):
            return pipeline.db.register(self.user, self.filepath, correlation_id, {**message, "source": "airflow"})

        file_id, created = self._run(register, storage=False)
        self.log.info("file %s (%s), correlation id %s", file_id, "new" if created else "existing", correlation_id)
        return [file_id]


class EgaProcessOperator(_EgaOperator):
    """Ingest and verify a batch of files.

    :param file_ids: the files (a list; usually mapped over the drain's batches)
    :param steps: the steps to run for each file, in order
    """

    template_fields: Sequence[str] = ("file_ids",)

    def __init__(self, *, file_ids: list[str], steps: Sequence[str] = ("ingest", "verify"), **kwargs: Any):
        super().__init__(**kwargs)
        self.file_ids = file_ids
        self.steps = tuple(steps)

    def execute(self, context: Any) -> dict:
        keys = "verify" in self.steps
        result = self._run(lambda p, b: p.process(list(self.file_ids), self.steps), keys=keys)
        return self._finish(result)


class EgaAccessionOperator(_EgaOperator):
    """Give verified files their accession id, waiting deferred until CEGA's answer arrives.

    :param file_ids: the files of the batch (files not verified are skipped)
    :param poll_interval: seconds between the trigger's polls
    :param accession_timeout: how long to wait for CEGA before the task fails
    """

    template_fields: Sequence[str] = ("file_ids",)

    def __init__(
        self,
        *,
        file_ids: list[str],
        poll_interval: float = 5.0,
        accession_timeout: timedelta = timedelta(days=1),
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.file_ids = file_ids
        self.poll_interval = poll_interval
        self.accession_timeout = accession_timeout

    def _step(self, file_ids: list[str]) -> tuple[BatchResult, list[str]]:
        from include.ega.pipeline import drain_accessions

        def work(pipeline: Pipeline, broker):
            drain_accessions(pipeline, broker)
            statuses = pipeline.db.statuses(file_ids)
            todo = [f for f in file_ids if statuses.get(f) == "verified"]
            result = pipeline.process(todo, ("accession",))
            waiting = [f for f, s in result.done.items() if s == "verified"]
            return result, waiting

        return self._run(work, storage=True)

    def deadline_message(self) -> str:
        return (f"no accession from Central EGA within {self.accession_timeout} for the file(s) still "
                f"verified of this batch ({len(self.file_ids or [])} file(s): {list(self.file_ids or [])})")

    def _wait_or_finish(
        self, result: BatchResult, waiting: list[str], deadline: float, user_errors: dict[str, str]
    ) -> dict:
        result.user_errors = {**user_errors, **result.user_errors}
        if waiting and not result.transient:
            from sensitive_data.triggers.ega import EgaAccessionTrigger

            self.log.info("waiting (deferred) for the accession of %d file(s)", len(waiting))
            self.defer(
                trigger=EgaAccessionTrigger(
                    waiting, self.lega_db_conn_id, self.lega_broker_conn_id, self.poll_interval
                ),
                method_name="execute_complete",
                kwargs={"deadline": deadline, "user_errors": result.user_errors},
                # the deadline of the whole wait, across the defers of a partly answered batch
                timeout=timedelta(seconds=max(deadline - time.time(), 1.0)),
            )
        return self._finish(result)

    def execute(self, context: Any) -> dict:
        deadline = time.time() + self.accession_timeout.total_seconds()
        result, waiting = self._step(list(self.file_ids or []))
        return self._wait_or_finish(result, waiting, deadline, {})

    def execute_complete(
        self, context: Any, event: dict, deadline: float, user_errors: dict[str, str] | None = None
    ) -> dict:
        self.raise_for_event(event)
        result, waiting = self._step(list(self.file_ids or []))
        return self._wait_or_finish(result, waiting, deadline, user_errors or {})


# -- shared by the EGA DAG files (composition helpers, no I/O) -----------------------------------
SCHEDULED_SWITCH = "ega_ingest_scheduled"


def drain_params() -> dict[str, Any]:
    """The Params of the draining DAGs (``ega_ingest``, ``ega_ingest_events``)."""
    from airflow.sdk import Param

    return {
        "max_messages": Param(
            100,
            type="integer",
            minimum=1,
            maximum=10000,
            title="Messages per run",
            description="At most this many messages are taken from each incoming queue (files, stableIDs) by one run.",
        ),
        "batch_size": Param(
            10,
            type="integer",
            minimum=1,
            maximum=1000,
            title="Files per task",
            description="Files handled by one mapped task: many small files share one task's start-up cost.",
        ),
    }


def drain_and_ingest(group_id: str = "drain_and_ingest", scheduled_switch: str | None = None) -> Any:
    """A TaskGroup in the current DAG: ``drain`` -> ``ingest_verify`` (mapped over the drain's
    batches) -> ``accession`` (mapped, all_done) -> ``done`` (fails the run when a batch had a user
    error; the other batches went on meanwhile). Data flows through ``drain.output``.

    :param scheduled_switch: see ``EgaDrainOperator``
    """
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import TaskGroup

    with TaskGroup(group_id, tooltip="drain CEGA's messages, then ingest, verify and accession in batches") as group:
        drain_task = EgaDrainOperator(
            task_id="drain",
            max_messages="{{ params.max_messages }}",
            batch_size="{{ params.batch_size }}",
            scheduled_switch=scheduled_switch,
        )
        process = EgaProcessOperator.partial(task_id="ingest_verify", pool="ega_verify").expand(
            file_ids=drain_task.output
        )
        accession = EgaAccessionOperator.partial(task_id="accession", trigger_rule="all_done").expand(
            file_ids=drain_task.output
        )
        done = EmptyOperator(task_id="done", retries=0)
        process >> accession >> done
        process >> done
    return group
