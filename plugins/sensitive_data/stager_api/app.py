"""The stager API: the paths of the DCCN data stager under ``/v1``, behind Airflow's authentication.

Mounted by the ``sensitive_data`` plugin at ``/stager`` on Airflow's API server. Every path but
``/v1/ping`` needs an Airflow JWT (``Authorization: Bearer`` or the UI's cookie), validated by
Airflow's own ``get_user`` dependency. A user sees and acts on their own jobs only; stager admins
see all and may submit for any ``stagerUser``/``drUser``. The API works with any auth manager: it
asks only for the user's name and the generic ``is_authorized_variable`` (a stager admin is whoever
may edit the ``stager_settings`` variable: they could map themselves to any identity anyway).

Accepting a job (:func:`create_app` ``submit``): the caller may act as its stagerUser and drUser
(:func:`include.stager.accounts.may_act_as`: the ``identities`` setting, by default the same
name); ``drPass`` (plaintext, PKCS#1 v1.5 or unlabelled OAEP from a client) is checked against the
repository with a WebDAV PROPFIND, then re-encrypted with OAEP bound to drUser, stagerUser and the
new job id; the job is sealed for that id and the caller, and the run is created with the caller
as its triggering user. The transfer tasks verify all of it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Body, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse

from include.stager.accounts import may_act_as
from include.stager.errors import StagerError, UserError
from include.stager.job import SEAL_FIELDS, new_job_id, parse_job
from sensitive_data.stager_api.runs import STATES, AirflowRunStore, JobRecord

log = logging.getLogger(__name__)
# Field names whose values Airflow's secrets masker must hide wherever it redacts by key name, the
# event log of the REST API included (airflow/api_fastapi/logging/decorators.py, action_logging,
# redacts the request body with secrets_masker.redact(value, key)). The masker compares lower-cased
# key names, so "drpass" (not "drPass"). Deployments also set [core] sensitive_var_conn_names = drpass.
SENSITIVE_FIELDS = ("drpass",)


def hide_sensitive_fields() -> None:
    """Make the API server's secrets masker treat ``drPass`` as sensitive, whatever the configuration."""
    try:
        from airflow._shared.secrets_masker import _secrets_masker
    except ImportError:  # not inside Airflow (unit tests of the app alone)
        return
    masker = _secrets_masker()
    known = list(getattr(masker, "sensitive_variables_fields", None) or [])
    missing = [name for name in SENSITIVE_FIELDS if name not in known]
    if missing:
        masker.sensitive_variables_fields = [*known, *missing]


@dataclass
class Caller:
    name: str
    admin: bool


@dataclass
class Services:
    """What the API needs from the outside, replaceable in tests."""

    store: Any  # AirflowRunStore-like
    looks_encrypted: Callable[[str], bool]
    decrypt_client: Callable[[str], str]  # a client's ciphertext -> password (v1.5: unproven)
    encrypt_bound: Callable[..., str]  # (password, *, dr_user, stager_user, job_id) -> ciphertext
    seal: Callable[[dict, str, str], str]  # (job, job_id, submitted_by) -> seal
    check_credential: Callable[[str, str], None]
    dac_collections: Callable[[], dict[str, str]]
    identities: Callable[[], dict]


def airflow_services() -> Services:
    from sensitive_data.hooks.stager import StagerKeysHook, StagerSealHook, StagerWebdavHook, stager_settings

    keys = StagerKeysHook()
    return Services(store=AirflowRunStore(), looks_encrypted=keys.looks_encrypted,
                    decrypt_client=keys.decrypt_client, encrypt_bound=keys.encrypt_bound,
                    seal=StagerSealHook().seal,
                    check_credential=StagerWebdavHook().check_credential,
                    dac_collections=lambda: stager_settings().dac_collections,
                    identities=lambda: stager_settings().identities)


async def airflow_caller(request: Request) -> Caller:
    """The Airflow user of the request, validated exactly as the API server does."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import VariableDetails
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPAuthorizationCredentials

    header = request.headers.get("authorization", "")
    creds = None
    if header.lower().startswith("bearer "):
        creds = HTTPAuthorizationCredentials(scheme="Bearer", credentials=header[7:].strip())
    user = await get_user(request, None, creds)
    # auth-manager agnostic: whoever may edit the stager's settings (allow-list, identities) is a
    # stager admin; no role attribute of one particular auth manager is read
    admin = get_auth_manager().is_authorized_variable(
        method="PUT", details=VariableDetails(key="stager_settings"), user=user)
    return Caller(name=user.get_name(), admin=bool(admin))


def job_view(rec: JobRecord) -> dict:
    data = {k: v for k, v in rec.conf.items() if k not in ("drPass", "seal")}
    return {
        "id": rec.id, "state": rec.state, "attempts": rec.attempts, "progress": rec.progress,
        "error": rec.error, "owner": rec.owner, "data": data,
        "createdAt": rec.created.isoformat() if rec.created else None,
        "startedAt": rec.started.isoformat() if rec.started else None,
        "updatedAt": rec.updated.isoformat() if rec.updated else None,
        "finishedAt": rec.finished.isoformat() if rec.finished else None,
    }


def create_app(services: Callable[[], Services] = airflow_services,
               caller: Callable[..., Any] = airflow_caller) -> FastAPI:
    app = FastAPI(title="DCCN data stager API", version="1",
                  description="Transfer jobs between project storage and the data repository.")
    state: dict[str, Services] = {}

    def svc() -> Services:
        if "s" not in state:
            state["s"] = services()
        return state["s"]

    def own(job_id: str, who: Caller) -> JobRecord:
        rec = svc().store.get(job_id)
        if rec is None or (not who.admin and rec.owner != who.name):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
        return rec

    def submit(doc: Any, who: Caller) -> str:
        """Check who may act, check the credential, bind drPass to the job, seal it, create the run;
        UserError when refused."""
        if not isinstance(doc, dict):
            raise UserError("a job is a JSON object")
        given = sorted(set(doc) & set(SEAL_FIELDS))
        if given:
            raise UserError(f"{', '.join(given)} are set by the stager API, not by the submitter")
        job = parse_job(doc)
        s = svc()
        if not who.admin:
            may_act_as(who.name, job.stagerUser, job.drUser, s.identities())
        if s.looks_encrypted(job.drPass):
            # a client's ciphertext; a PKCS#1 v1.5 result may be random bytes (implicit rejection):
            # the credential check below is what proves it
            password = s.decrypt_client(job.drPass)
        else:
            password = job.drPass  # plaintext from the client: checked, then encrypted below
        s.check_credential(job.drUser, password)
        job_id = new_job_id()
        conf = {**job.public(), "drPass": s.encrypt_bound(password, dr_user=job.drUser,
                                                          stager_user=job.stagerUser, job_id=job_id)}
        password = ""  # noqa: S105 - drop the secret
        conf["submittedBy"] = who.name
        conf["seal"] = s.seal(conf, job_id, who.name)
        return s.store.create(conf, who.name, job_id)

    def refused(exc: StagerError) -> HTTPException:
        code = status.HTTP_400_BAD_REQUEST
        if not isinstance(exc, UserError):
            code = status.HTTP_503_SERVICE_UNAVAILABLE
        return HTTPException(code, str(exc))

    @app.get("/v1/ping")
    def ping() -> str:
        return "pong"

    @app.post("/v1/job")
    def post_job(doc: dict, who: Caller = Depends(caller)) -> dict:
        try:
            job_id = submit(doc, who)
        except StagerError as exc:
            raise refused(exc) from None
        return job_view(svc().store.get(job_id))

    @app.post("/v1/jobs")
    def post_jobs(body: Any = Body(...), who: Caller = Depends(caller)):
        docs = body.get("jobs", []) if isinstance(body, dict) else body
        if not isinstance(docs, list) or not docs:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "give {\"jobs\": [job, ...]}")
        results, ok = [], 0
        for doc in docs:
            try:
                job_id = submit(doc, who)
                results.append({"id": job_id, "status": 200})
                ok += 1
            except StagerError as exc:
                err = refused(exc)
                results.append({"error": err.detail, "status": err.status_code})
        code = 200 if ok == len(docs) else (207 if ok else 400)
        return JSONResponse({"jobs": results}, status_code=code)

    @app.get("/v1/jobs")
    def get_jobs(who: Caller = Depends(caller)) -> dict:
        return {"jobs": [job_view(r) for r in svc().store.list(None if who.admin else who.name)]}

    @app.get("/v1/jobs/{state}")
    def get_jobs_in(state: str, who: Caller = Depends(caller)) -> dict:
        if state not in STATES:
            raise HTTPException(status.HTTP_400_BAD_REQUEST,
                                f"unknown state {state!r}; one of {', '.join(STATES)}")
        recs = svc().store.list(None if who.admin else who.name)
        return {"jobs": [job_view(r) for r in recs if r.state == state]}

    @app.get("/v1/job/{job_id}")
    def get_job(job_id: str, who: Caller = Depends(caller)) -> dict:
        return job_view(own(job_id, who))

    @app.delete("/v1/job/{job_id}")
    def delete_job(job_id: str, who: Caller = Depends(caller)) -> dict:
        rec = own(job_id, who)
        if rec.state in ("completed", "archived"):
            raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} has already ended ({rec.state})")
        svc().store.cancel(job_id)
        return job_view(svc().store.get(job_id))

    @app.put("/v1/job/scheduled/{job_id}")
    def rerun_job(job_id: str, who: Caller = Depends(caller)) -> dict:
        rec = own(job_id, who)
        if rec.state in ("active", "pending", "retry"):
            raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} is {rec.state}; cancel it first")
        svc().store.rerun(job_id)
        return job_view(svc().store.get(job_id))

    @app.get("/v1/dac/project/{number}")
    def dac_project(number: str, who: Caller = Depends(caller)) -> dict:
        from include.stager.dac import dac_collection

        try:
            coll = dac_collection(number, svc().dac_collections())
        except UserError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        return {"project": number, "collection": coll, "url": f"irods:{coll}"}

    return app


hide_sensitive_fields()
app = create_app()
