"""Operators of the data stager: validate a job, run its transfer as the submitting user."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy
from airflow.sdk.exceptions import AirflowFailException

from include.stager.errors import ConfigurationError, StagerError, UserError
from include.stager.job import FIELDS, parse_job
from include.stager.runner import run_as, terminate
from sensitive_data.hooks.stager import StagerIrodsHook, StagerKeysHook, stager_settings

BACKOFF = timedelta(seconds=30)


class StagerRetryPolicy(RetryPolicy):
    """User errors fail at once; anything else is retried after ``30 s x attempt``."""

    def __init__(self, base_delay: timedelta = BACKOFF):
        self.base_delay = base_delay

    def evaluate(self, exception, try_number, max_tries, context=None) -> RetryDecision:
        if isinstance(exception, UserError | AirflowFailException):
            return RetryDecision.fail(reason=f"user error, not retried: {exception}")
        if isinstance(exception, ConfigurationError):
            return RetryDecision.fail(reason=f"deployment error, not retried: {exception}")
        return RetryDecision.retry(delay=self.base_delay * max(1, try_number),
                                   reason=f"attempt {try_number} failed; retrying")

    def serialize(self) -> dict[str, Any]:
        return {"base_delay": self.base_delay.total_seconds()}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> StagerRetryPolicy:
        return cls(timedelta(seconds=data.get("base_delay", 30)))


def _job_doc(context) -> dict:
    params = context.get("params") or {}
    return {k: params.get(k) for k in FIELDS if k in params}


def _fail(context, message: str) -> None:
    context["ti"].xcom_push(key="error", value=message)
    raise AirflowFailException(message)


class StagerValidateJobOperator(BaseOperator):
    """Check a job document (the run's params) before any transfer: fields, paths, and that ``drPass``
    is a ciphertext of the stager's key. A bad job fails without retry.

    :param stager_keys_conn_id: connection with the stager's private key.
    """

    template_fields: Sequence[str] = ()

    def __init__(self, *, stager_keys_conn_id: str = "stager_keys", **kwargs):
        super().__init__(**kwargs)
        self.stager_keys_conn_id = stager_keys_conn_id

    def execute(self, context) -> dict:
        try:
            job = parse_job(_job_doc(context))
            StagerKeysHook(self.stager_keys_conn_id).decrypt(job.drPass)
        except UserError as exc:
            _fail(context, f"job refused: {exc}")
        self.log.info("job accepted: %s", job.public())
        return job.public()


class StagerTransferOperator(BaseOperator):
    """Run the job's sync between POSIX storage and iRODS as ``stagerUser``.

    Progress ``{total, processed, failed}`` goes to the log and to the XCom ``progress`` (the job
    status of the stager API) every ``report_interval`` seconds; the last error to XCom ``error``.

    :param irods_conn_id: the repository's iRODS connection.
    :param stager_keys_conn_id: connection with the stager's private key.
    :param threads: files in parallel (default: the ``threads`` stager setting).
    :param report_interval: seconds between progress reports (default: the setting).
    """

    template_fields: Sequence[str] = ("threads", "report_interval")

    def __init__(self, *, irods_conn_id: str = "irods", stager_keys_conn_id: str = "stager_keys",
                 threads: int | None = None, report_interval: float | None = None, **kwargs):
        kwargs.setdefault("retries", 4)
        kwargs.setdefault("retry_delay", BACKOFF)
        kwargs.setdefault("retry_policy", StagerRetryPolicy())
        super().__init__(**kwargs)
        self.irods_conn_id = irods_conn_id
        self.stager_keys_conn_id = stager_keys_conn_id
        self.threads = threads
        self.report_interval = report_interval
        self._cancel = threading.Event()
        self._proc = None

    def execute(self, context) -> dict:
        ti = context["ti"]
        try:
            job = parse_job(_job_doc(context))
            password = StagerKeysHook(self.stager_keys_conn_id).decrypt(job.drPass)
        except UserError as exc:
            _fail(context, f"job refused: {exc}")
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
        started = time.monotonic()

        def on_progress(progress: dict) -> None:
            self.log.info("progress: total=%s processed=%s failed=%s bytes=%s/%s", progress["total"],
                          progress["processed"], progress["failed"], progress["bytes_done"],
                          progress["bytes_total"])
            ti.xcom_push(key="progress", value={**progress, "elapsed": round(time.monotonic() - started, 1)})

        def on_start(proc) -> None:
            self._proc = proc

        try:
            result = run_as(spec, job.stagerUser, on_progress=on_progress, cancel=self._cancel,
                            on_start=on_start, log=self.log, python=settings.runner_python or None)
        except (UserError, ConfigurationError) as exc:
            _fail(context, str(exc))
        except StagerError as exc:
            ti.xcom_push(key="error", value=str(exc))
            raise
        finally:
            spec["irods"]["password"] = ""  # noqa: S105 - drop the secret
        self.log.info("transfer finished: %s files, %s skipped, %s bytes", result["processed"],
                      result["skipped"], result["bytes_done"])
        keys = ("total", "processed", "failed", "skipped", "bytes_total", "bytes_done")
        return {k: result[k] for k in keys}

    def on_kill(self) -> None:
        self._cancel.set()
        if self._proc is not None and self._proc.poll() is None:
            terminate(self._proc)


class StagerStreamerJobOperator(BaseOperator):
    """Build the streamer's transfer job from ``{projectId, srcPath, modality}`` (the run's params).

    The repository password of the service account is encrypted with the stager's key before it
    leaves this task, so only ciphertext reaches XCom and the transfer run's conf.

    :param stager_streamer_conn_id: the service account connection.
    :param stager_keys_conn_id: connection with the stager's private key.
    """

    def __init__(self, *, stager_streamer_conn_id: str = "stager_streamer",
                 stager_keys_conn_id: str = "stager_keys", **kwargs):
        super().__init__(**kwargs)
        self.stager_streamer_conn_id = stager_streamer_conn_id
        self.stager_keys_conn_id = stager_keys_conn_id

    def execute(self, context) -> dict:
        from include.stager.dac import streamer_job
        from sensitive_data.hooks.stager import StagerServiceAccountHook

        params = context["params"]
        settings = stager_settings()
        user, password, posix_user = StagerServiceAccountHook(self.stager_streamer_conn_id).credential()
        try:
            job = streamer_job(params.get("projectId"), params.get("srcPath"), params.get("modality"),
                               mapping=settings.dac_collections, timeouts=settings.streamer_timeouts,
                               user=user,
                               encrypted_password=StagerKeysHook(self.stager_keys_conn_id).encrypt(password),
                               stager_user=posix_user, email=settings.admins[0] if settings.admins else "")
            parse_job(job)
        except UserError as exc:
            _fail(context, str(exc))
        self.log.info("streamer job: %s -> %s", job["srcURL"], job["dstURL"])
        return job
