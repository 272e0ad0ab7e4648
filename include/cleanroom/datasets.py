"""A party's dataset, sealed for the clean room.

The owner's plaintext file (CSV with a header row in the contract's column order, or Parquet with
the contract's columns) is checked against the contract's schema, then encrypted with a fresh
256-bit key into the party's storage as ``<storage>/<owner>/<contract>/<dataset>.sealed``
(AES-256-GCM in 64 KiB segments: the format in ``include.cleanroom.spark_job``, the only reader).
The key goes to governance as the secret ``<dataset>-dek`` of the owner, released only to an
attested clean room running an approved query. ``<dataset>.sealed.json`` records what was sealed,
written last, so a re-run reuses a completed sealing and redoes an interrupted one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from include.cleanroom.contract import Dataset
from include.cleanroom.errors import CleanroomUserError
from include.cleanroom.names import validate_document_id
from include.cleanroom.spark_job import KEY_SIZE, SEGMENT_SIZE, seal

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class SealedDataset:
    dataset: str
    owner: str
    path: str
    uri: str
    source_sha256: str
    sealed_sha256: str
    size: int

    def as_dict(self) -> dict:
        return asdict(self)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def check_source(source: Path, dataset: Dataset) -> None:
    """The source exists and has the contract's columns (CSV: the header, in order)."""
    if not source.is_file():
        raise CleanroomUserError(f"the source of dataset {dataset.name} ({source}) does not exist or is not a file")
    if source.stat().st_size == 0:
        raise CleanroomUserError(f"the source of dataset {dataset.name} ({source}) is empty")
    wanted = [c for c, _ in dataset.columns]
    if dataset.format == "csv":
        with open(source, newline="", encoding="utf-8", errors="replace") as fh:
            header = next(csv.reader(fh), [])
        if [h.strip() for h in header] != wanted:
            raise CleanroomUserError(
                f"the CSV header of {source.name} is {header}; the contract declares {wanted} (same names, same order)"
            )
    else:
        import pyarrow.parquet as pq  # noqa: PLC0415 - only for Parquet sources

        try:
            names = pq.read_schema(source).names
        except Exception as exc:  # noqa: BLE001 - any reader error is a bad file
            raise CleanroomUserError(f"{source.name} is not a readable Parquet file ({type(exc).__name__})") from None
        missing = [c for c in wanted if c not in names]
        if missing:
            raise CleanroomUserError(f"the Parquet file {source.name} lacks column(s) {', '.join(missing)}")


def sealed_path(storage: Path, contract_id: str, dataset: Dataset) -> Path:
    validate_document_id(contract_id, "contract id")
    return Path(storage) / dataset.owner / contract_id / f"{dataset.name}.sealed"


def completed(storage: Path, contract_id: str, dataset: Dataset, source: Path) -> SealedDataset | None:
    """The recorded sealing of this very source, if it completed and the sealed file is intact."""
    path = sealed_path(storage, contract_id, dataset)
    record = path.with_name(path.name + ".json")
    try:
        info = SealedDataset(**json.loads(record.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if not path.is_file() or info.source_sha256 != sha256_file(source) or info.sealed_sha256 != sha256_file(path):
        return None
    return info


def forget(storage: Path, contract_id: str, dataset: Dataset) -> None:
    """Drop the record before sealing anew (a new key makes an older sealed file useless)."""
    path = sealed_path(storage, contract_id, dataset)
    path.with_name(path.name + ".json").unlink(missing_ok=True)


def seal_dataset(
    source: Path, storage: Path, contract_id: str, dataset: Dataset, key: bytes
) -> tuple[SealedDataset, Path]:
    """Encrypt ``source`` to a temporary file next to the final place. Returns the result and the
    temporary path; ``commit`` renames it once the key is safely in governance."""
    if len(key) != KEY_SIZE:
        raise ValueError("the dataset key must be 32 bytes")
    check_source(source, dataset)
    path = sealed_path(storage, contract_id, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    src_hash = hashlib.sha256()

    class _Hashing:
        def __init__(self, fh):
            self.fh = fh

        def read(self, n: int) -> bytes:
            data = self.fh.read(n)
            src_hash.update(data)
            return data

    sealed_hash = hashlib.sha256()

    class _HashingOut:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data: bytes) -> int:
            sealed_hash.update(data)
            return self.fh.write(data)

    with open(source, "rb") as src, open(tmp, "wb") as dst:
        size = seal(_Hashing(src), _HashingOut(dst), key, dataset.name, dataset.format, SEGMENT_SIZE)
        dst.flush()
        os.fsync(dst.fileno())
    info = SealedDataset(
        dataset=dataset.name,
        owner=dataset.owner,
        path=str(path),
        uri=path.resolve().as_uri(),
        source_sha256=src_hash.hexdigest(),
        sealed_sha256=sealed_hash.hexdigest(),
        size=size,
    )
    return info, tmp


def commit(info: SealedDataset, tmp: Path) -> SealedDataset:
    """Move the sealed file into place, then write its record (last)."""
    path = Path(info.path)
    os.replace(tmp, path)
    record = path.with_name(path.name + ".json")
    part = record.with_name(record.name + ".part")
    part.write_text(json.dumps(info.as_dict(), indent=2))
    os.replace(part, record)
    return info
