"""Names in the clean room, and the rules they follow.

Contract and query document ids become part of Kubernetes object names (the SparkApplication is
``cr-<document>-<run>``), so they are DNS-1123 labels. Dataset names are SQL identifiers: the
clean room registers each dataset as a view of that name. Member ids name the collaborators in
governance (CGS member names).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from include.cleanroom.errors import CleanroomUserError
from include.common.paths import confine

DOCUMENT_ID_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"
DATASET_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"
MEMBER_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
K8S_NAME_MAX = 63

_DOCUMENT_ID = re.compile(DOCUMENT_ID_PATTERN)
_DATASET = re.compile(DATASET_PATTERN)
_MEMBER = re.compile(MEMBER_PATTERN)
_COLUMN = re.compile(COLUMN_PATTERN)


def _check(pattern: re.Pattern, value: object, what: str, rule: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise CleanroomUserError(f"{what} {value!r} is not valid: {rule}")
    return value


def validate_document_id(value: object, what: str = "id") -> str:
    return _check(
        _DOCUMENT_ID,
        value,
        what,
        "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 40 characters",
    )


def validate_dataset_name(value: object) -> str:
    return _check(_DATASET, value, "dataset name", "a lowercase SQL identifier (a-z, 0-9, '_'), at most 63 characters")


def validate_member(value: object) -> str:
    return _check(_MEMBER, value, "member", "lowercase letters, digits, '_' or '-', starting with a letter")


def validate_column(value: object) -> str:
    return _check(_COLUMN, value, "column", "an SQL identifier (letters, digits, '_'), at most 128 characters")


def secret_name(dataset: str) -> str:
    """The governance secret that holds a dataset's key (CGS stores it as ``<member>_<name>``)."""
    return f"{validate_dataset_name(dataset)}-dek"


def secret_id(owner: str, dataset: str) -> str:
    return f"{validate_member(owner)}_{secret_name(dataset)}"


def application_name(document_id: str, run_id: str) -> str:
    """A SparkApplication name for one run of a query document: DNS-1123, at most 63 characters,
    the same for every try of one DAG run (so that a retry finds the application it submitted)."""
    validate_document_id(document_id, "query document id")
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
    return f"cr-{document_id}-{digest}"[:K8S_NAME_MAX].rstrip("-")


def party_source(staging: Path, owner: str, source: str) -> Path:
    """The plaintext source of ``owner``'s dataset: absolute, or relative to the staging directory,
    and in any case inside ``<staging>/<owner>/`` once links are resolved (a party reads only its
    own area: no ``..``, no link out, no other party's file). The shared
    ``include.common.paths.confine`` with ``follow_symlinks=True`` decides; an absolute path is
    compared with the staging directory's real path (give a relative one if you reach it by a link)."""
    area = os.path.realpath(Path(staging) / validate_member(owner))
    where = f"{owner}'s staging area {str(Path(staging) / owner)!r}"
    raw = os.fspath(source) if isinstance(source, str | os.PathLike) else ""
    path = raw if os.path.isabs(raw) else os.path.join(os.path.realpath(staging), raw)
    try:
        return confine(area, path, follow_symlinks=True, what="source", where=where, error=CleanroomUserError)
    except CleanroomUserError as exc:
        detail = exc.reason.rsplit(": ", 1)[-1]
        raise CleanroomUserError(
            f"source {source!r} is outside {where}" + ("" if "outside" in detail else f" ({detail})"),
            hint="put the file there and give its path relative to the staging directory",
        ) from None
