"""The data streamer's view of a project: its DAC collection and where raw data goes."""

from __future__ import annotations

import posixpath
import re

from include.stager.errors import UserError

WRITE_ACCESS = ("own", "modify_object", "write", "delete_object")

PROJECT = re.compile(r"^\d{7}\.\d{2}$")
MODALITIES = ("MRI", "MEG", "OPM")


def dac_collection(project: str, mapping: dict[str, str]) -> str:
    """The DAC collection of ``project`` (``3010000.01``); :class:`UserError` when unknown."""
    if not isinstance(project, str) or not PROJECT.match(project):
        raise UserError(f"project number {project!r} is not of the form 3010000.01")
    try:
        return mapping[project]
    except KeyError:
        raise UserError(f"project {project} has no DAC collection in the stager settings") from None


def streamer_job(project: str, src_path: str, modality: str, *, mapping: dict[str, str],
                 timeouts: dict[str, list[int]], user: str, encrypted_password: str,
                 stager_user: str, email: str = "") -> dict:
    """The transfer job the streamer submits: ``src_path`` into ``irods:<collection>/raw/<sub path>``."""
    modality = (modality or "").upper()
    if modality not in timeouts:
        raise UserError(f"unknown modality {modality!r}; expected one of {', '.join(sorted(timeouts))}")
    if not src_path or not src_path.startswith("/") or ".." in src_path.split("/"):
        raise UserError(f"srcPath {src_path!r} must be an absolute path")
    collection = dac_collection(project, mapping)
    src = posixpath.normpath(src_path)
    # raw data of the project keeps its path below the project directory (/project/<number>/raw/...)
    marker = f"/{project}/raw/"
    tail = src.split(marker, 1)[1] if marker in src + "/" else posixpath.basename(src)
    dst = posixpath.join(collection, "raw", tail.rstrip("/")) if tail else posixpath.join(collection, "raw")
    timeout, noprogress = timeouts[modality]
    return {
        "title": f"[streamer] {modality} {project}: {posixpath.basename(src)}",
        "stagerUser": stager_user, "stagerUserEmail": email, "drUser": user, "drPass": encrypted_password,
        "srcURL": src, "dstURL": f"irods:{dst}", "timeout": int(timeout),
        "timeout_noprogress": int(noprogress),
    }


def check_dac_collection(client, collection: str) -> None:
    """Refuse, with what to do, a DAC collection the streamer's data would be lost in.

    iRODS checks only an object's own access rows; what the streamer creates below the collection
    gets the collection's rows only when its inheritance flag is on (``chlRegColl`` / ``chlRegDataObj``
    in iRODS's db_plugin.cpp), else it is the streamer's alone and the project cannot read it. DCCN's
    repository sets up a DAC collection with inheritance on and the streamer with write access.

    :param client: an :class:`include.stager.irods.IrodsClient` logged in as the streamer.
    """
    user = client.account.user
    info = client.collection_access(collection)
    if info is None:
        raise UserError(f"the DAC collection {collection} does not exist or {user} may not read it; the "
                        "repository must create it and give the streamer write access")
    inherit, access = info
    principals = client.groups()
    if not any(access.get(p) in WRITE_ACCESS for p in principals):
        raise UserError(f"{user} has no write access on the DAC collection {collection}; the collection's "
                        f"manager must grant it (ichmod write {user} {collection})")
    if not inherit:
        raise UserError(f"the DAC collection {collection} has inheritance off: what the streamer writes below it "
                        "would be readable by the streamer only; the collection's manager must turn it on "
                        f"(ichmod inherit {collection})")
