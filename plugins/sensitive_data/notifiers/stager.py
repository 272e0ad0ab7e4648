"""E-mail to the submitter of a stager job: ``[OK] <title> completed`` / ``[ALERT] <title> failed``.

A thin layer over the SMTP provider's :class:`SmtpNotifier`. Failure alerts go to the submitter
with the stager admins in CC, or to the admins when the job has no e-mail address.

Whatever a job's fields hold, they cannot change a mail header nor stop the mail: the subject is
built from the title with every control character (CR, LF, tab, Unicode line separators) turned
into a space and cut to :data:`MAX_TITLE` characters (non-ASCII is RFC 2047-encoded by the e-mail
library), and only addresses of one plain ``local@domain`` form are used (anything else goes to the
admins instead, with a note). Should sending still fail, an alert is sent again to the admins with
a subject made of the run id alone.
"""

from __future__ import annotations

import html
import logging
import re

from airflow.providers.smtp.notifications.smtp import SmtpNotifier

from include.stager.job import EMAIL, SEAL_FIELDS, SECRET_FIELDS
from include.stager.pipeline import ERROR_KEY
from sensitive_data.hooks.stager import stager_settings

log = logging.getLogger(__name__)
MAX_TITLE = 150
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u0085]+")


def header_text(value, limit: int = MAX_TITLE) -> str:
    """``value`` made safe for one mail header line: no control characters, bounded length."""
    text = " ".join(_CONTROL.sub(" ", str(value or "")).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def valid_address(value) -> str:
    """A single plain e-mail address, or "" when ``value`` is not one."""
    text = str(value or "").strip()
    return text if len(text) <= 254 and EMAIL.match(text) else ""


def _job(context) -> dict:
    conf = {}
    dag_run = context.get("dag_run")
    if dag_run is not None and getattr(dag_run, "conf", None):
        conf = dict(dag_run.conf)
    params = context.get("params") or {}
    merged = {**{k: v for k, v in dict(params).items()}, **conf}
    return {k: v for k, v in merged.items() if k not in SECRET_FIELDS + SEAL_FIELDS}


def last_error(context, task_ids: tuple[str, ...]) -> str:
    """The error the first of ``task_ids`` that has one recorded in the job status (XCom ``error``),
    when the context can tell."""
    ti = context.get("ti")
    if ti is None:
        return ""
    for task_id in task_ids:
        try:
            value = ti.xcom_pull(task_ids=task_id, key=ERROR_KEY)
        except Exception:  # noqa: BLE001 - a callback context without XCom access: mail without it
            return ""
        if value:
            return str(value)
    return ""


def recipients(job: dict, failed: bool, admins: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """``(to, cc)`` of a job's notification; an invalid address of the job is replaced by the admins."""
    admins_ok = [a for a in (valid_address(a) for a in admins) if a]
    user = valid_address(job.get("stagerUserEmail"))
    if not user:
        return admins_ok, []
    return [user], (admins_ok if failed else [])


def subject(job: dict, failed: bool, run_id: str = "") -> str:
    title = header_text(job.get("title")) or header_text(run_id) or "data stager job"
    return f"[ALERT] {title} failed" if failed else f"[OK] {title} completed"


class StagerNotifier(SmtpNotifier):
    """Notify the submitter of a job about its outcome.

    :param failed: True for the failure alert, False for the completion notice.
    :param error_tasks: the tasks whose job-status error (XCom ``error``) the alert quotes, the
        first that has one (the DAG passes its task ids: ``include.stager.pipeline``).
    :param smtp_conn_id: the SMTP connection.
    """

    def __init__(self, *, failed: bool, error_tasks: tuple[str, ...] = (), smtp_conn_id: str = "smtp_default",
                 **kwargs):
        super().__init__(to=[], smtp_conn_id=smtp_conn_id, **kwargs)
        self.failed = failed
        self.error_tasks = tuple(error_tasks)

    def notify(self, context) -> None:
        settings = stager_settings()
        job = _job(context)
        run_id = context.get("run_id") or ""
        self.to, self.cc = recipients(job, self.failed, settings.admins)
        self.subject = subject(job, self.failed, run_id)
        self.from_email = self.from_email or settings.from_email
        rows = "".join(f"<tr><th align='left'>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in job.items())
        reason = (last_error(context, self.error_tasks) if self.failed else "") or context.get("reason") or ""
        status = "failed" if self.failed else "completed"
        given = str(job.get("stagerUserEmail") or "").strip()
        note = ""
        if given and not valid_address(given):
            note = (f"<p>The job's e-mail address {html.escape(given)!s} is not a plain address; this "
                    "notice went to the stager admins instead.</p>")
        self.html_content = (f"<p>Data stager job <b>{html.escape(run_id)}</b> {status}.</p>"
                             f"<table>{rows}</table>" + note
                             + (f"<p>{html.escape(str(reason))}</p>" if reason else ""))
        try:
            super().notify(context)
        except Exception:
            if not self.failed:
                raise
            # an alert is never lost: once more to the admins, with nothing of the job in the headers
            log.exception("the failure alert of %s could not be sent; sending a plain one to the admins",
                          header_text(run_id))
            self.to, self.cc = [a for a in (valid_address(a) for a in settings.admins) if a], []
            self.subject = f"[ALERT] data stager job {header_text(run_id) or '(unknown)'} failed"
            super().notify(context)
