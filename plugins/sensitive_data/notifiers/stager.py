"""E-mail to the submitter of a stager job: ``[OK] <title> completed`` / ``[ALERT] <title> failed``.

A thin layer over the SMTP provider's :class:`SmtpNotifier`. Failure alerts go to the submitter
with the stager admins in CC, or to the admins when the job has no e-mail address.
"""

from __future__ import annotations

import html

from airflow.providers.smtp.notifications.smtp import SmtpNotifier

from include.stager.job import SECRET_FIELDS
from sensitive_data.hooks.stager import stager_settings


def _job(context) -> dict:
    conf = {}
    dag_run = context.get("dag_run")
    if dag_run is not None and getattr(dag_run, "conf", None):
        conf = dict(dag_run.conf)
    params = context.get("params") or {}
    merged = {**{k: v for k, v in dict(params).items()}, **conf}
    return {k: v for k, v in merged.items() if k not in SECRET_FIELDS}


def last_error(context) -> str:
    """The error the job's tasks recorded (XCom ``error``), when the context can tell."""
    ti = context.get("ti")
    if ti is None:
        return ""
    for task_id in ("transfer", "validate"):
        try:
            value = ti.xcom_pull(task_ids=task_id, key="error")
        except Exception:  # noqa: BLE001 - a callback context without XCom access: mail without it
            return ""
        if value:
            return str(value)
    return ""


def recipients(job: dict, failed: bool, admins: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """``(to, cc)`` of a job's notification."""
    user = (job.get("stagerUserEmail") or "").strip()
    if not user:
        return list(admins), []
    return [user], (list(admins) if failed else [])


def subject(job: dict, failed: bool, run_id: str = "") -> str:
    title = job.get("title") or run_id or "data stager job"
    return f"[ALERT] {title} failed" if failed else f"[OK] {title} completed"


class StagerNotifier(SmtpNotifier):
    """Notify the submitter of a job about its outcome.

    :param failed: True for the failure alert, False for the completion notice.
    :param smtp_conn_id: the SMTP connection.
    """

    def __init__(self, *, failed: bool, smtp_conn_id: str = "smtp_default", **kwargs):
        super().__init__(to=[], smtp_conn_id=smtp_conn_id, **kwargs)
        self.failed = failed

    def notify(self, context) -> None:
        settings = stager_settings()
        job = _job(context)
        run_id = context.get("run_id") or ""
        self.to, self.cc = recipients(job, self.failed, settings.admins)
        self.subject = subject(job, self.failed, run_id)
        self.from_email = self.from_email or settings.from_email
        rows = "".join(f"<tr><th align='left'>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in job.items())
        reason = (last_error(context) if self.failed else "") or context.get("reason") or ""
        status = "failed" if self.failed else "completed"
        self.html_content = (f"<p>Data stager job <b>{html.escape(run_id)}</b> {status}.</p>"
                             f"<table>{rows}</table>"
                             + (f"<p>{html.escape(str(reason))}</p>" if reason else ""))
        super().notify(context)
