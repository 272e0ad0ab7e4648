"""The stager API: the paths of the DCCN data stager under ``/v1``, behind Airflow's authentication.

Mounted by the ``sensitive_data`` plugin at ``/stager`` on Airflow's API server. Every path but
``/v1/ping`` needs an Airflow JWT (``Authorization: Bearer`` or the UI's cookie), validated by
Airflow's own ``get_user`` dependency. A user sees and acts on their own jobs only; stager admins
(Airflow admins) see all and may submit for any ``stagerUser``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Body, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse

from include.stager.errors import StagerError, UserError
from include.stager.job import parse_job
from sensitive_data.stager_api.runs import STATES, AirflowRunStore, JobRecord

log = logging.getLogger(__name__)


@dataclass
class Caller:
    name: str
    admin: bool


@dataclass
class Services:
    """What the API needs from the outside, replaceable in tests."""

    store: Any  # AirflowRunStore-like
    decrypt: Callable[[str], str]
    encrypt: Callable[[str], str]
    check_credential: Callable[[str, str], None]
    dac_collections: Callable[[], dict[str, str]]


def airflow_services() -> Services:
    from sensitive_data.hooks.stager import StagerKeysHook, StagerWebdavHook, stager_settings

    keys = StagerKeysHook()
    return Services(store=AirflowRunStore(), decrypt=keys.decrypt, encrypt=keys.encrypt,
                    check_credential=StagerWebdavHook().check_credential,
                    dac_collections=lambda: stager_settings().dac_collections)


async def airflow_caller(request: Request) -> Caller:
    """The Airflow user of the request, validated exactly as the API server does."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPAuthorizationCredentials

    header = request.headers.get("authorization", "")
    creds = None
    if header.lower().startswith("bearer "):
        creds = HTTPAuthorizationCredentials(scheme="Bearer", credentials=header[7:].strip())
    user = await get_user(request, None, creds)
    role = getattr(user, "role", None)
    if role is not None:
        admin = str(role).upper() == "ADMIN"
    else:
        admin = get_auth_manager().is_authorized_connection(method="PUT", user=user)
    return Caller(name=user.get_name(), admin=bool(admin))


def job_view(rec: JobRecord) -> dict:
    data = {k: v for k, v in rec.conf.items() if k != "drPass"}
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
        """Validate, check the credential, encrypt drPass, create the run; UserError when refused."""
        if not isinstance(doc, dict):
            raise UserError("a job is a JSON object")
        job = parse_job(doc)
        if not who.admin and job.stagerUser != who.name:
            raise UserError(f"you ({who.name}) may only submit jobs as stagerUser {who.name!r}")
        s = svc()
        try:
            password = s.decrypt(job.drPass)
        except UserError:
            password = job.drPass  # plaintext from the client: checked, then encrypted below
        s.check_credential(job.drUser, password)
        conf = {**job.public(), "drPass": s.encrypt(password)}
        return s.store.create(conf, who.name)

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


app = create_app()
