"""Operators of the data stager: validate a job, run its transfer as the submitting user.

Both tasks of ``data_stager_transfer`` trust nothing of their run's conf on its own (any Airflow
account may create a run through ``/api/v2``): :func:`verified_job` checks the job's seal against
the conf, the run id and the run's triggering user, decrypts ``drPass`` only as a ciphertext bound
to this job, and checks that ``stagerUser`` may run transfers at all, before any file is touched.

Errors take the shared translation (``sensitive_data.common.errors.translate_errors``): a user or
configuration error fails the task without retry, a transient one is retried with the DAG's
``RETRIES_TRANSFER`` (30 s x attempt). Before that, :func:`job_status` puts the message into the
job's status channel (XCom ``error``), which the stager API shows as the job's last error and the
failure e-mail quotes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from airflow.sdk import BaseOperator

from include.common.errors import SensitiveDataError
from include.stager.accounts import check_stager_user
from include.stager.errors import UserError
from include.stager.job import FIELDS, Job, new_job_id, parse_job
from include.stager.pipeline import ERROR_KEY, PROGRESS_KEY, RUN_ID_KEY
from include.stager.runner import RULES, run_as, terminate
from sensitive_data.common.errors import SensitiveDataOperatorMixin, translate_errors
from sensitive_data.hooks.stager import StagerIrodsHook, StagerKeysHook, StagerSealHook, stager_settings

STATUS_KEYS = ("total", "processed", "failed", "skipped", "bytes_total", "bytes_done")


def _job_doc(context) -> dict:
    params = context.get("params") or {}
    return {k: params.get(k) for k in FIELDS if k in params}


@contextmanager
def job_status(context, what: str = "") -> Iterator[None]:
    """The stager's error channel around the work: an error of ours goes to the job status (XCom
    ``error``, read by the stager API and the failure mail) and is then translated into Airflow
    behaviour (``translate_errors``: user and configuration errors fail without retry, transient
    ones are retried, a bug fails loudly and is not reported as the job's error).

    :param what: said before the message (``"job refused"``)
    """
    with translate_errors(what):
        try:
            yield
        except SensitiveDataError as exc:
            context["ti"].xcom_push(key=ERROR_KEY, value=f"{what}: {exc}" if what else str(exc))
            raise


def progress_to_status(ti, log, started: float | None = None) -> Callable[[dict], None]:
    """The transfer's progress reports (``include.stager.transfer.Progress.as_dict()``, as the runner
    passes them on) to the task log and the job status (XCom ``progress``), with the time elapsed."""
    started = time.monotonic() if started is None else started

    def on_progress(progress: dict) -> None:
        log.info("progress: total=%s processed=%s failed=%s bytes=%s/%s", progress.get("total"),
                 progress.get("processed"), progress.get("failed"), progress.get("bytes_done"),
                 progress.get("bytes_total"))
        ti.xcom_push(key=PROGRESS_KEY, value={**progress, "elapsed": round(time.monotonic() - started, 1)})

    return on_progress


def _run_id(context) -> str:
    run_id = context.get("run_id") or getattr(context.get("dag_run"), "run_id", None)
    if not run_id:
        raise UserError("the task has no run id to check the job's seal against")
    return str(run_id)


def account_rules(settings) -> dict:
    """Who may run transfers, from the stager settings (see include/stager/accounts.py)."""
    return {name: getattr(settings, name) for name in RULES}


def verified_job(context, *, stager_keys_conn_id: str, stager_seal_conn_id: str) -> tuple[Job, str]:
    """The run's job and its decrypted repository password, or :class:`UserError`.

    Checks, in this order: the job document; its seal (made by the stager API or the streamer for
    exactly these fields, this run id and this submitter, who must be the run's triggering user
    where Airflow recorded one); ``stagerUser`` against the account rules; ``drPass`` as a
    ciphertext bound to drUser, stagerUser and this run id. The password is masked in logs.
    """
    doc = _job_doc(context)
    job = parse_job(doc)
    run_id = _run_id(context)
    dag_run = context.get("dag_run")
    triggering_user = getattr(dag_run, "triggering_user_name", None) if dag_run is not None else None
    StagerSealHook(stager_seal_conn_id).verify(
        {**job.public(), "drPass": job.drPass}, run_id, doc.get("seal"), doc.get("submittedBy"), triggering_user)
    check_stager_user(job.stagerUser, **account_rules(stager_settings()))
    password = StagerKeysHook(stager_keys_conn_id).decrypt_bound(
        job.drPass, dr_user=job.drUser, stager_user=job.stagerUser, job_id=run_id)
    return job, password


class StagerValidateJobOperator(SensitiveDataOperatorMixin, BaseOperator):
    """Check a job (the run's params) before any transfer: fields, paths, its seal, that
    ``stagerUser`` may run transfers and that ``drPass`` is encrypted for this job
    (:func:`verified_job`). A bad job fails without retry.

    :param stager_keys_conn_id: connection with the stager's private key.
    :param stager_seal_conn_id: connection with the job seal key.
    """

    template_fields: Sequence[str] = ()

    def __init__(self, *, stager_keys_conn_id: str = "stager_keys", stager_seal_conn_id: str = "stager_seal",
                 **kwargs):
        super().__init__(**kwargs)
        self.stager_keys_conn_id = stager_keys_conn_id
        self.stager_seal_conn_id = stager_seal_conn_id

    def execute(self, context) -> dict:
        with job_status(context, "job refused"):
            job, _password = verified_job(context, stager_keys_conn_id=self.stager_keys_conn_id,
                                          stager_seal_conn_id=self.stager_seal_conn_id)
            del _password
        self.log.info("job accepted: %s", job.public())
        return job.public()


class StagerTransferOperator(SensitiveDataOperatorMixin, BaseOperator):
    """Run the job's sync between POSIX storage and iRODS as ``stagerUser``.

    Progress ``{total, processed, failed, ...}`` (the engine's ``ProgressReporter``, see
    ``include/stager/transfer.py``) goes to the log and to the XCom ``progress`` (the job status of
    the stager API) every ``report_interval`` seconds; the last error to XCom ``error``. Retries
    come from the DAG (``RETRIES_TRANSFER``).

    The job is verified again here (:func:`verified_job`), whatever ``validate`` said: the seal,
    the account rules and the bound ``drPass``; the runner checks the account rules once more
    right before it switches to ``stagerUser``.

    :param irods_conn_id: the repository's iRODS connection.
    :param stager_keys_conn_id: connection with the stager's private key.
    :param stager_seal_conn_id: connection with the job seal key.
    :param threads: files in parallel (default: the ``threads`` stager setting).
    :param report_interval: seconds between progress reports (default: the setting).
    """

    template_fields: Sequence[str] = ("threads", "report_interval")

    def __init__(self, *, irods_conn_id: str = "irods", stager_keys_conn_id: str = "stager_keys",
                 stager_seal_conn_id: str = "stager_seal", threads: int | None = None,
                 report_interval: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.irods_conn_id = irods_conn_id
        self.stager_keys_conn_id = stager_keys_conn_id
        self.stager_seal_conn_id = stager_seal_conn_id
        self.threads = threads
        self.report_interval = report_interval
        self._cancel = threading.Event()
        self._proc = None

    def execute(self, context) -> dict:
        ti = context["ti"]
        with job_status(context, "job refused"):
            job, password = verified_job(context, stager_keys_conn_id=self.stager_keys_conn_id,
                                         stager_seal_conn_id=self.stager_seal_conn_id)
        with job_status(context):
            settings = stager_settings()
        account = StagerIrodsHook(self.irods_conn_id).account(job.drUser, password)
        src, dst = job.srcURL, job.dstURL
        spec = {
            "src": src, "dst": dst,
            "irods": {"host": account.host, "port": account.port, "zone": account.zone,
                      "user": account.user, "password": account.password},
            "threads": int(self.threads or settings.threads),
            "num_threads": settings.num_threads, "parallel_threshold": settings.parallel_threshold,
            "timeout": job.timeout, "timeout_noprogress": job.timeout_noprogress,
            "report_interval": float(self.report_interval or settings.report_interval),
        }
        self.log.info("transfer %s -> %s as %s (repository user %s), attempt %s", src, dst, job.stagerUser,
                      job.drUser, ti.try_number)

        def on_start(proc) -> None:
            self._proc = proc

        try:
            with job_status(context):
                result = run_as(spec, job.stagerUser, on_progress=progress_to_status(ti, self.log),
                                cancel=self._cancel, on_start=on_start, log=self.log,
                                python=settings.runner_python or None, rules=account_rules(settings))
        finally:
            spec["irods"]["password"] = ""  # noqa: S105 - drop the secret
            password = ""  # noqa: S105
        self.log.info("transfer finished: %s files, %s skipped, %s bytes", result["processed"],
                      result["skipped"], result["bytes_done"])
        return {k: result[k] for k in STATUS_KEYS}

    def on_kill(self) -> None:
        self._cancel.set()
        if self._proc is not None and self._proc.poll() is None:
            terminate(self._proc)


class StagerStreamerJobOperator(SensitiveDataOperatorMixin, BaseOperator):
    """Build and seal the streamer's transfer job from ``{projectId, srcPath, modality}`` (the run's params).

    ``srcPath`` must lie inside the project's own raw storage (the ``streamer_source`` setting), with
    symbolic links resolved (:func:`include.stager.streamer.confine_source`); the job runs as the
    service account's POSIX user (connection ``stager_streamer``, ``extra.stager_user``), which must
    pass the account rules. The repository password is encrypted bound to the job, the job id is
    chosen here (XCom ``run_id``: the DAG hands ``output["run_id"]`` to the ``submit`` task as the
    run id of the transfer) and the job is sealed for the
    Airflow user who triggered the streamer, so only ciphertext and the seal reach XCom and the
    transfer run's conf.

    :param stager_streamer_conn_id: the service account connection.
    :param irods_conn_id: the repository's iRODS connection (the DAC collection is checked as the
        service account before the job is sealed: it must exist, be writable and inherit its rules).
    :param stager_keys_conn_id: connection with the stager's private key.
    :param stager_seal_conn_id: connection with the job seal key.
    """

    def __init__(self, *, stager_streamer_conn_id: str = "stager_streamer",
                 stager_keys_conn_id: str = "stager_keys", stager_seal_conn_id: str = "stager_seal",
                 irods_conn_id: str = "irods", **kwargs):
        super().__init__(**kwargs)
        self.irods_conn_id = irods_conn_id
        self.stager_streamer_conn_id = stager_streamer_conn_id
        self.stager_keys_conn_id = stager_keys_conn_id
        self.stager_seal_conn_id = stager_seal_conn_id

    @translate_errors()
    def execute(self, context) -> dict:
        from include.stager.dac import check_dac_collection, dac_collection, streamer_job
        from include.stager.settings import DEFAULT_STREAMER_SOURCE
        from include.stager.streamer import confine_source
        from sensitive_data.hooks.stager import StagerServiceAccountHook

        params = context["params"]
        settings = stager_settings()
        user, password, posix_user = StagerServiceAccountHook(self.stager_streamer_conn_id).credential()
        dag_run = context.get("dag_run")
        submitted_by = getattr(dag_run, "triggering_user_name", None) or (dag_run.dag_id if dag_run else "")
        submitted_by = submitted_by or "data_stager_streamer"
        job_id = new_job_id("streamer")
        try:
            check_stager_user(posix_user, **account_rules(settings))
            src = confine_source(params.get("projectId"), params.get("srcPath"),
                                 settings.streamer_source or DEFAULT_STREAMER_SOURCE)
            keys = StagerKeysHook(self.stager_keys_conn_id)
            job = streamer_job(params.get("projectId"), src, params.get("modality"),
                               mapping=settings.dac_collections, timeouts=settings.streamer_timeouts,
                               user=user,
                               encrypted_password=keys.encrypt_bound(password, dr_user=user,
                                                                     stager_user=posix_user, job_id=job_id),
                               stager_user=posix_user, email=settings.admins[0] if settings.admins else "")
            parsed = parse_job(job)
            with StagerIrodsHook(self.irods_conn_id).client(user, password) as client:
                check_dac_collection(client, dac_collection(params.get("projectId"), settings.dac_collections))
        finally:
            password = ""  # noqa: S105 - drop the secret
        job["seal"] = StagerSealHook(self.stager_seal_conn_id).seal(
            {**parsed.public(), "drPass": parsed.drPass}, job_id, submitted_by)
        job["submittedBy"] = submitted_by
        context["ti"].xcom_push(key=RUN_ID_KEY, value=job_id)
        self.log.info("streamer job %s: %s -> %s as %s", job_id, job["srcURL"], job["dstURL"], posix_user)
        return job
