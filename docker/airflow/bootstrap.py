"""First step of ``airflow-init`` in docker-compose: the files the connections of airflow_settings.yaml
point at, under ``$SDP_LOCAL`` (the shared ``sdp-data`` volume). Idempotent: existing files are kept.

* ``lega/{inbox,archive,keys}``: the node's Crypt4GH key pair (passphrase ``$LEGA_KEY_PASSPHRASE``,
  which must equal the ``lega_keys`` connection's password);
* ``stager/keys/stager.pem``: the data stager's RSA key pair;
* ``supercomputer_sftp/id_ed25519[.pub]``: the SFTP client key; the ``sftp`` service authorises the
  public half for ``$SFTP_USER``;
* ``irods/users.json``: the repository's users (``$IRODS_USERS``, ``name:password`` separated by spaces)
  for the WebDAV door, in the format of the devstack iRODS stand-in's users file;
The Airflow accounts are not made here: airflow-init runs ``python -m sensitive_data.auth.roles sync``
(roles and per-DAG permissions of the FAB auth manager) and ``... admin admin`` (the admin account,
password from ``$AIRFLOW_ADMIN_PASSWORD``: never on a command line) after ``airflow db migrate``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def sftp_key(directory: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    directory.mkdir(parents=True, exist_ok=True)
    private = directory / "id_ed25519"
    if private.exists():
        return
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    (directory / "id_ed25519.pub").write_bytes(pub + b" airflow@sdp\n")
    write_private(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                             serialization.NoEncryption()))


def users_file(path: Path, spec: str) -> None:
    if path.exists():
        return
    users = {}
    for item in spec.split():
        name, _, password = item.partition(":")
        if not password:
            sys.exit(f"IRODS_USERS: '{item}' is not name:password")
        users[name] = {"password": password, "type": "rodsuser"}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps({"users": users}, indent=2).encode())


def main() -> None:
    local = Path(os.environ["SDP_LOCAL"])
    for sub in ("lega/inbox", "lega/archive", "lega/keys", "stager/keys", "staging", "hpcs/scratch", "webdav"):
        (local / sub).mkdir(parents=True, exist_ok=True)

    from include.ega.keygen import ensure_keypair

    ensure_keypair(local / "lega" / "keys", os.environ["LEGA_KEY_PASSPHRASE"])

    from devstack.irods.__main__ import ensure_keys

    ensure_keys(local / "stager" / "keys")
    sftp_key(local / "supercomputer_sftp")
    users_file(local / "irods" / "users.json", os.environ.get("IRODS_USERS", ""))

    print(f"bootstrap: files under {local} ready")


if __name__ == "__main__":
    main()
