"""Who owns a secret name: the Airflow user who first prepared it, and the one archive its key opens.

The HPCS server derives the client id from the caller's network address (CSC's server does the
same), so every run on one Airflow worker is the same HPCS client ``client_<id>`` and its Vault
token may write any ``kv/data/client_<id>/*``. The separation between Airflow users is therefore
ours to keep, on the worker where that client id lives: one record per secret, in the scratch
root (directories 0700, files 0600, created with ``O_EXCL``)::

    <scratch root>/owners/client_<id>/<secret_name>.json
        {"owner": "<Airflow user>", "run": "<dag_id>/<run_id>", "sha512": "<archive>" | null, ...}

Rules (docs/security.md, "HPCS"):
* the first run to claim a secret name owns it; a run of another Airflow user is refused, and so
  is another run of the same user (a key in Vault is never replaced: choose a new secret name);
* the owning run may be retried (cleared) as often as needed;
* the record binds the secret to one archive (sha512 of the encrypted archive) before its key is
  written; a retry whose archive changed is refused, one with the unchanged archive goes on.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from include.hpcs.errors import HpcsUserError
from include.hpcs.names import validate_secret_name
from include.hpcs.scratch import write_private_file


@dataclass
class SecretRecord:
    secret_path: str
    owner: str
    run: str
    sha512: str | None = None
    claimed_at: float = 0.0


class SecretOwners:
    """The ownership records of one scratch root.

    :param root: the HPCS scratch root (``hpcs_scratch_dir``)
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root) / "owners"

    def path(self, client_id: str, secret_name: str) -> Path:
        if not client_id or not client_id.replace("-", "").isalnum():
            raise HpcsUserError(f"not an HPCS client id: {client_id!r}")
        return self.root / f"client_{client_id}" / f"{validate_secret_name(secret_name)}.json"

    def load(self, client_id: str, secret_name: str) -> SecretRecord | None:
        path = self.path(client_id, secret_name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        with os.fdopen(fd) as fh:
            return SecretRecord(**json.load(fh))

    def claim(self, client_id: str, secret_name: str, owner: str, run: str) -> SecretRecord:
        """Own ``secret_name`` for ``owner`` and ``run``, or check that they already do."""
        if not owner:
            raise HpcsUserError(
                "this run has no triggering user (scheduled or started by the system): an HPCS "
                "preparation must be triggered by a person, through the UI or the REST API"
            )
        path = self.path(client_id, secret_name)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        record = SecretRecord(f"client_{client_id}/{secret_name}", owner, run, None, time.time())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            return self.check(client_id, secret_name, owner, run)
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(record), fh)
            fh.flush()
            os.fsync(fh.fileno())
        return record

    def check(self, client_id: str, secret_name: str, owner: str, run: str) -> SecretRecord:
        """The record of ``secret_name`` if ``owner``'s ``run`` owns it; a user error otherwise."""
        record = self.load(client_id, secret_name)
        if record is None:
            raise HpcsUserError(
                f"secret_name {secret_name!r} has not been claimed by this run: the 'prepare' task "
                "must run first (clear it)"
            )
        if record.owner != owner:
            raise HpcsUserError(
                f"secret_name {secret_name!r} belongs to another Airflow user: only the user who first "
                "prepared it may re-run it or add workloads to it; choose another secret_name"
            )
        if record.run != run:
            raise HpcsUserError(
                f"secret_name {secret_name!r} was already prepared by your run {record.run}; its key in "
                "Vault is never replaced: choose a new secret_name, or clear that run to retry it"
            )
        return record

    def bind_archive(self, client_id: str, secret_name: str, owner: str, run: str, sha512: str) -> bool:
        """Bind the secret to the archive ``sha512`` before its key is written. True when it was
        not bound yet; False for a retry with the same archive; a user error for another archive."""
        record = self.check(client_id, secret_name, owner, run)
        if record.sha512 == sha512:
            return False
        if record.sha512 is not None:
            raise HpcsUserError(
                f"the archive of secret_name {secret_name!r} changed since its key was written to Vault "
                f"(was sha512 {record.sha512[:16]}..., now {sha512[:16]}...): the key is never replaced; "
                "prepare the new input under a new secret_name"
            )
        record.sha512 = sha512
        write_private_file(self.path(client_id, secret_name), json.dumps(asdict(record)).encode())
        return True
