"""EGA operators without services: the run-time switch of scheduled draining, the deferral deadline."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from sensitive_data.operators.ega import EgaAccessionOperator, EgaDrainOperator


def _scheduled():
    from airflow.utils.types import DagRunType

    return {"dag_run": SimpleNamespace(run_type=DagRunType.SCHEDULED)}


def test_scheduled_run_skips_when_the_switch_is_off(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_EGA_INGEST_SCHEDULED", "false")
    op = EgaDrainOperator(task_id="drain", scheduled_switch="ega_ingest_scheduled")
    with pytest.raises(AirflowSkipException, match="scheduled draining is off"):
        op.execute(_scheduled())


def test_a_switch_that_does_not_parse_fails_the_task(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_EGA_INGEST_SCHEDULED", "off")
    op = EgaDrainOperator(task_id="drain", scheduled_switch="ega_ingest_scheduled")
    with pytest.raises(AirflowFailException, match="Variable 'ega_ingest_scheduled'"):
        op.execute(_scheduled())


def test_accession_deadline_says_what_was_waited_for():
    op = EgaAccessionOperator(task_id="a", file_ids=["f1", "f2"], accession_timeout=timedelta(hours=2))
    with pytest.raises(AirflowFailException, match=r"no accession from Central EGA within 2:00:00 .*'f1', 'f2'"):
        op.resume_execution("__fail__", {"error": "Trigger timeout"}, {})
