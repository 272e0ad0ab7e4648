"""The stager's mail: the error it quotes comes from the tasks the DAG names."""

from __future__ import annotations

from sensitive_data.notifiers.stager import StagerNotifier, last_error


class TI:
    def __init__(self, errors):
        self.errors, self.asked = errors, []

    def xcom_pull(self, task_ids, key):
        self.asked.append((task_ids, key))
        return self.errors.get(task_ids)


def test_the_first_named_task_with_an_error_is_quoted():
    ti = TI({"validate": "job refused: no seal", "transfer": "permission denied: /p"})
    assert last_error({"ti": ti}, ("transfer", "validate")) == "permission denied: /p"
    assert last_error({"ti": TI({"validate": "job refused: no seal"})}, ("transfer", "validate")) \
        == "job refused: no seal"
    assert ti.asked == [("transfer", "error")]


def test_no_task_named_no_xcom_read():
    ti = TI({"transfer": "x"})
    assert last_error({"ti": ti}, ()) == "" and ti.asked == []
    assert last_error({}, ("transfer",)) == ""


def test_the_notifier_keeps_the_tasks_the_dag_gives():
    assert StagerNotifier(failed=True, error_tasks=["transfer", "validate"]).error_tasks == ("transfer", "validate")
    assert StagerNotifier(failed=False).error_tasks == ()
