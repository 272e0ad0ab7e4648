"""The seal of a stager job: proof that the stager API (or the streamer) accepted this job, for this
run, from this Airflow user.

A seal is HMAC-SHA256, with a key only the submitting side and the workers hold (the ``stager_seal``
connection), over a canonical encoding of everything that decides who acts on what:

``jobId``            the DAG run id (a seal copied into another run does not match)
``submittedBy``      the Airflow user who submitted the job (checked against the run's
                     ``triggering_user_name`` where Airflow recorded one)
``stagerUser``       the POSIX user the transfer runs as
``drUser``           the repository user ...
``drPass``           ... and the SHA-256 of its ciphertext (itself bound to drUser, stagerUser, jobId)
``srcURL``, ``dstURL``  what is read and what is written
``stagerUserEmail``  who is told about the outcome

Left out on purpose: ``title`` (free text, sanitised where it is used) and the two timeouts (they
only shorten a job the sealed fields already allow). The encoding is JSON with sorted keys, no
whitespace and ASCII escapes, prefixed with a version tag: no two different jobs encode alike.
The seal travels in the run conf as ``seal`` (``v1.<base64url mac>``) with ``submittedBy``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from include.stager.errors import UserError

VERSION = "v1"
CONTEXT = b"dccn-stager/job-seal/v1\n"
SEALED = ("stagerUser", "drUser", "srcURL", "dstURL", "stagerUserEmail")
MIN_KEY_BYTES = 32


def check_key(key: bytes) -> bytes:
    if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the stager seal key must be at least {MIN_KEY_BYTES} bytes")
    return key


def canonical(job: dict, job_id: str, submitted_by: str) -> bytes:
    """The bytes a seal covers. ``job`` holds the (normalised) job fields, ``drPass`` encrypted."""
    fields = {name: str(job.get(name) or "") for name in SEALED}
    fields["drPassSha256"] = hashlib.sha256(str(job.get("drPass") or "").encode()).hexdigest()
    fields["jobId"] = str(job_id)
    fields["submittedBy"] = str(submitted_by)
    return CONTEXT + json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def seal(job: dict, job_id: str, submitted_by: str, key: bytes) -> str:
    """The seal of ``job`` for run ``job_id`` submitted by ``submitted_by``."""
    if not job_id or not submitted_by:
        raise ValueError("a seal needs the job id and the submitting user")
    mac = hmac.new(check_key(key), canonical(job, job_id, submitted_by), hashlib.sha256).digest()
    return f"{VERSION}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def verify(job: dict, job_id: str, seal_value, submitted_by, key: bytes,
           triggering_user: str | None = None) -> None:
    """Refuse (:class:`UserError`) a job whose seal is missing, malformed, forged or made for other
    fields, another run or another submitter.

    :param triggering_user: the run's ``triggering_user_name`` as Airflow recorded it (None when
        Airflow recorded none); when given it must be the sealed submitter.
    """
    if not seal_value or not isinstance(seal_value, str):
        raise UserError("the job carries no seal: submit it through the stager API (/stager/v1/job); "
                        "a run created any other way is refused")
    if not submitted_by or not isinstance(submitted_by, str):
        raise UserError("the job names no submitting user (submittedBy); submit it through the stager API")
    version, _, mac_b64 = seal_value.partition(".")
    try:
        mac = base64.urlsafe_b64decode(mac_b64 + "=" * (-len(mac_b64) % 4))
    except (binascii.Error, ValueError):
        mac = b""
    if version != VERSION or len(mac) != hashlib.sha256().digest_size:
        raise UserError("the job's seal is malformed; submit the job through the stager API")
    expected = hmac.new(check_key(key), canonical(job, job_id, submitted_by), hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise UserError("the job's seal does not match this run: it was forged, or copied from another "
                        "job, or a sealed field (stagerUser, drUser, drPass, srcURL, dstURL, "
                        "stagerUserEmail, submittedBy) was changed; submit the job through the stager API")
    if triggering_user is not None and triggering_user != submitted_by:
        raise UserError(f"this run was triggered by {triggering_user!r}, but its seal was made for a job "
                        f"submitted by {submitted_by!r}; a sealed job cannot be re-submitted by someone else")
