"""Operator that checks that one outside system is reachable with the configured credentials."""

from __future__ import annotations

from collections.abc import Sequence

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException
from airflow.sdk.module_loading import import_string

from include.common.errors import ConfigError
from sensitive_data.common.errors import SensitiveDataOperatorMixin, translate_errors
from sensitive_data.common.retries import RETRIES_NONE
from sensitive_data.hooks import health


class SystemUnhealthy(ConfigError):
    """An outside system is unreachable or refuses our credentials: the check fails, not retried
    (its answer is the point; run it again once the system is fixed)."""

    default_hint = ""


class HealthCheckOperator(SensitiveDataOperatorMixin, BaseOperator):
    """Check one outside system through its Airflow connection and say plainly what is wrong.

    :param conn_id: the connection to check.
    :param system: a human name of the system, used in messages.
    :param probe: ``"hook"`` to call the connection's hook ``test_connection()``, or the dotted path
        of a callable ``probe(conn_id) -> str`` that raises on failure.
    :param hint: what an operator should do when the check fails.
    """

    template_fields: Sequence[str] = ("conn_id",)
    ui_color = "#e8f7e4"

    def __init__(self, *, conn_id: str, system: str, probe: str = "hook", hint: str = "", **kwargs):
        for name, value in RETRIES_NONE.task_args().items():
            kwargs.setdefault(name, value)
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.system = system
        self.probe = probe
        self.hint = hint

    @translate_errors()
    def execute(self, context) -> str:
        wanted = (context.get("params") or {}).get("systems")
        if wanted is not None and self.task_id not in wanted:
            raise AirflowSkipException(f"{self.task_id} not among the systems asked for: {', '.join(wanted)}")
        where = f"{self.system} (connection '{self.conn_id}')"
        try:
            at = health.address(self.conn_id)
        except Exception as exc:  # noqa: BLE001 - any lookup failure means the same to an operator
            raise SystemUnhealthy(f"{where}: the connection is not configured ({type(exc).__name__}). "
                                  f"Add it to airflow_settings.yaml or the secrets backend.") from None
        probe = health.probe_hook if self.probe == "hook" else import_string(self.probe)
        try:
            seen = probe(self.conn_id)
        except Exception as exc:  # noqa: BLE001 - every failure is reported the same plain way
            reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            hint = f" What to do: {self.hint}." if self.hint else ""
            raise SystemUnhealthy(f"{where} at {at} is not usable: {reason}.{hint}") from None
        self.log.info("%s at %s: OK (%s)", where, at, seen)
        return f"OK: {seen}"
