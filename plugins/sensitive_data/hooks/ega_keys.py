"""Hook for the archive's Crypt4GH private key(s): connection ``lega_keys``.

The connection's password is the keys' passphrase. Extra, one of:
- ``private_keys``: a list of PEM texts (or one text);
- ``private_key_paths``: a list of files holding PEM keys;
- ``vault_conn_id`` + ``vault_path``: a Vault secret whose ``private_key*`` fields hold PEM keys
  and whose optional ``passphrase`` field overrides the connection's password.
Several keys are tried in turn on each header (key rotation). Keys never reach logs or XCom: the
passphrase and every PEM text (from the connection, a file or Vault) are registered with the
secrets masker before they are used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from include.ega.c4gh import load_private_key


class EgaKeysHook(BaseHook):
    """:param lega_keys_conn_id: the keys connection"""

    conn_name_attr = "lega_keys_conn_id"
    default_conn_name = "lega_keys"
    conn_type = "generic"
    hook_name = "EGA archive keys"

    def __init__(self, lega_keys_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.lega_keys_conn_id = lega_keys_conn_id

    def get_private_keys(self) -> list[bytes]:
        conn = self.get_connection(self.lega_keys_conn_id)
        extra = conn.extra_dejson or {}
        passphrase = conn.password or None
        pems: list[str] = []
        if extra.get("vault_path"):
            from airflow.providers.hashicorp.hooks.vault import VaultHook

            secret = VaultHook(vault_conn_id=extra.get("vault_conn_id", "vault")).get_secret(extra["vault_path"])
            if not secret:
                raise ValueError(f"connection {self.lega_keys_conn_id}: the Vault secret is empty or missing")
            passphrase = secret.get("passphrase", passphrase)
            pems += [v for k, v in sorted(secret.items()) if k.startswith("private_key")]
        keys = extra.get("private_keys") or []
        pems += [keys] if isinstance(keys, str) else list(keys)
        paths = extra.get("private_key_paths") or []
        for path in [paths] if isinstance(paths, str) else paths:
            pems.append(Path(path).read_text())
        if not pems:
            raise ValueError(f"connection {self.lega_keys_conn_id} holds no private key")
        for value in [passphrase, *pems]:
            if value:
                mask_secret(value)
        try:
            return [load_private_key(pem, passphrase) for pem in pems]
        except Exception as exc:  # noqa: BLE001 - any failure: a message without key material
            # never chain: the exception could hold key material
            raise ValueError(
                f"connection {self.lega_keys_conn_id}: a private key could not be loaded "
                f"({type(exc).__name__}); check the key and its passphrase"
            ) from None

    def get_conn(self) -> list[bytes]:
        return self.get_private_keys()
