"""Every DAG imports cleanly, is documented, and parses fast (the dag-processor parses them often)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
PARSE_BUDGET_S = 1.0


@pytest.fixture(scope="module")
def dagbag():
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS), safe_mode=False)


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_every_dag_file_defines_a_dag(dagbag):
    files = {Path(d.fileloc).name for d in dagbag.dags.values()}
    assert files == {p.name for p in DAGS.glob("*.py")}


def test_dags_are_documented_tagged_and_owned(dagbag):
    problems = []
    for dag_id, dag in dagbag.dags.items():
        if not (dag.doc_md or "").strip():
            problems.append(f"{dag_id}: no doc_md")
        if not dag.tags:
            problems.append(f"{dag_id}: no tags")
        owners = {t.owner for t in dag.tasks}
        if not owners or owners & {"airflow", "", None}:
            problems.append(f"{dag_id}: tasks without an owner ({owners})")
        for name, param in dag.params.items():
            if not (param.description or "").strip():
                problems.append(f"{dag_id}: Param '{name}' has no description")
    assert problems == []


def test_each_dag_file_parses_within_budget(dagbag, capsys):
    stats = sorted(dagbag.dagbag_stats, key=lambda s: s.file)
    assert {Path(s.file).name for s in stats} == {p.name for p in DAGS.glob("*.py")}
    with capsys.disabled():
        print("\nDAG file parse times:")
        for s in stats:
            print(f"  {Path(s.file).name:<40} {s.duration.total_seconds() * 1000:7.1f} ms  ({s.dag_num} DAG)")
    slow = [(s.file, s.duration.total_seconds()) for s in stats if s.duration.total_seconds() >= PARSE_BUDGET_S]
    assert slow == []


def test_each_dag_file_is_named_after_its_dag(dagbag):
    """``dags/<dag_id>.py``: the local stack unpauses the pipelines by file name (devstack/stack.py)."""
    from devstack.stack import pipeline_dag_ids

    by_file = {Path(dag.fileloc).stem: dag_id for dag_id, dag in dagbag.dags.items()}
    assert all(stem == dag_id for stem, dag_id in by_file.items()), by_file
    assert sorted(pipeline_dag_ids()) == sorted(dagbag.dag_ids)
