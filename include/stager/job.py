"""The job document of the DCCN data stager: what a submitter sends, validated."""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from include.stager.errors import UserError
from include.stager.paths import parse_pair

DEFAULT_TIMEOUT = 259200  # 3 days
DEFAULT_TIMEOUT_NOPROGRESS = 3600
JOB_FIELDS = ("title", "stagerUser", "stagerUserEmail", "drUser", "drPass", "srcURL", "dstURL",
              "timeout", "timeout_noprogress")
# set by the stager API (or the streamer) when it accepts a job, never by the submitter: see seal.py
SEAL_FIELDS = ("seal", "submittedBy")
FIELDS = JOB_FIELDS + SEAL_FIELDS
SECRET_FIELDS = ("drPass",)
# one plain address (no display name, no list, no quoting): what may go into a mail header as is
EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
POSIX_USER = re.compile(r"^[a-z_][a-z0-9_.-]*[$]?$", re.I)


@dataclass(frozen=True)
class Job:
    title: str
    stagerUser: str  # noqa: N815 - the stager's own field names
    stagerUserEmail: str  # noqa: N815
    drUser: str  # noqa: N815
    drPass: str  # noqa: N815 - encrypted
    srcURL: str  # noqa: N815
    dstURL: str  # noqa: N815
    timeout: int = DEFAULT_TIMEOUT
    timeout_noprogress: int = DEFAULT_TIMEOUT_NOPROGRESS

    def public(self) -> dict:
        """The document without its secret, for status pages, logs and e-mail."""
        return {k: v for k, v in asdict(self).items() if k not in SECRET_FIELDS}


def _int(doc: dict, key: str, default: int) -> int:
    value = doc.get(key)
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UserError(f"{key} must be a number of seconds (0 = no limit), got {value!r}") from None
    if number < 0:
        raise UserError(f"{key} must not be negative")
    return number


def parse_job(doc: dict) -> Job:
    """Validate a job document (the run conf); :class:`UserError` says what is wrong."""
    if not isinstance(doc, dict):
        raise UserError("a job is a JSON object")
    unknown = sorted(set(doc) - set(FIELDS))
    if unknown:
        raise UserError(f"unknown job fields: {', '.join(unknown)}")
    missing = [k for k in ("stagerUser", "drUser", "drPass", "srcURL", "dstURL") if not doc.get(k)]
    if missing:
        raise UserError(f"missing job fields: {', '.join(missing)}")
    for key in ("title", "stagerUser", "stagerUserEmail", "drUser", "drPass", "srcURL", "dstURL", *SEAL_FIELDS):
        if doc.get(key) is not None and not isinstance(doc.get(key), str):
            raise UserError(f"{key} must be a string")
    if not POSIX_USER.match(doc["stagerUser"]):
        raise UserError(f"stagerUser {doc['stagerUser']!r} is not a valid user name")
    email = (doc.get("stagerUserEmail") or "").strip()
    if email and (len(email) > 254 or not EMAIL.match(email)):
        raise UserError(f"stagerUserEmail {email!r} is not an e-mail address")
    src, dst = parse_pair(doc["srcURL"], doc["dstURL"])
    return Job(
        title=(doc.get("title") or f"{src.url()} -> {dst.url()}").strip(),
        stagerUser=doc["stagerUser"], stagerUserEmail=email, drUser=doc["drUser"], drPass=doc["drPass"],
        srcURL=src.url(), dstURL=dst.url(),
        timeout=_int(doc, "timeout", DEFAULT_TIMEOUT),
        timeout_noprogress=_int(doc, "timeout_noprogress", DEFAULT_TIMEOUT_NOPROGRESS),
    )


def new_job_id(prefix: str = "stager") -> str:
    """A fresh job id (the DAG run id of ``data_stager_transfer``), chosen before the job is sealed."""
    return f"{prefix}__{datetime.now(UTC):%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:12]}"
