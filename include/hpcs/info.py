"""The dataset info file HPCS puts beside an archive at rest: ``<secret_name>.info.yaml``.

HPCS's format is ``{"info": {path_at_rest, secret_path, access_role, checksum, spiffeID}}``
(checksum: sha512 hex of the encrypted archive). We add the archive's name, size and compression,
which readers of the HPCS format ignore.
"""

from __future__ import annotations

import posixpath
from dataclasses import asdict, dataclass

import yaml

HEX512 = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class DatasetInfo:
    path_at_rest: str  # the archive's full path on the supercomputer
    secret_path: str  # client_<id>/<secret_name> in the kv mount
    access_role: str  # Vault JWT role of the workloads: client_<id>-<secret_name>
    checksum: str  # sha512 hex of the encrypted archive
    spiffeID: str  # noqa: N815 - HPCS's key
    archive: str
    size: int
    compression: str = "gzip"

    def __post_init__(self):
        if len(self.checksum) != 128 or not set(self.checksum) <= HEX512:
            raise ValueError("checksum must be a sha512 hex digest")

    @classmethod
    def build(
        cls,
        *,
        remote_dir: str,
        archive: str,
        size: int,
        checksum: str,
        secret_path: str,
        access_role: str,
        spiffe_id: str,
        compression: str,
    ) -> DatasetInfo:
        return cls(
            path_at_rest=posixpath.join(remote_dir, archive),
            secret_path=secret_path,
            access_role=access_role,
            checksum=checksum,
            spiffeID=spiffe_id,
            archive=archive,
            size=size,
            compression=compression,
        )

    def to_yaml(self) -> str:
        return yaml.safe_dump({"info": asdict(self)}, sort_keys=True)

    @classmethod
    def from_yaml(cls, text: str) -> DatasetInfo:
        data = yaml.safe_load(text)
        if not isinstance(data, dict) or not isinstance(data.get("info"), dict):
            raise ValueError("not an HPCS info file: no 'info' mapping")
        return cls(**data["info"])


def info_file_name(secret_name: str) -> str:
    return f"{secret_name}.info.yaml"
