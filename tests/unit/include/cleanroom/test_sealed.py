"""The sealed dataset format (AES-256-GCM segments) and sealing a party's source."""

from __future__ import annotations

import io
import os

import pytest

from include.cleanroom import datasets as sealing
from include.cleanroom.contract import Dataset
from include.cleanroom.errors import CleanroomUserError
from include.cleanroom.spark_job import SealedFormatError, seal, unseal

KEY = bytes(range(32))


@pytest.mark.parametrize("size", [0, 1, 100, 64 * 1024, 64 * 1024 + 1, 3 * 64 * 1024 + 17])
def test_round_trip(size):
    plain = os.urandom(size)
    out = io.BytesIO()
    assert seal(io.BytesIO(plain), out, KEY, "ds", "csv") == size
    back = io.BytesIO()
    header = unseal(io.BytesIO(out.getvalue()), back, KEY)
    assert back.getvalue() == plain and header["dataset"] == "ds" and header["size"] == size


def sealed(size=200_000, segment=64 * 1024) -> bytes:
    out = io.BytesIO()
    seal(io.BytesIO(os.urandom(size)), out, KEY, "ds", "csv", segment)
    return out.getvalue()


def test_wrong_key_damage_and_truncation_are_detected():
    data = sealed()
    with pytest.raises(SealedFormatError, match="wrong key or damaged"):
        unseal(io.BytesIO(data), io.BytesIO(), bytes(32))
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    with pytest.raises(SealedFormatError):
        unseal(io.BytesIO(bytes(flipped)), io.BytesIO(), KEY)
    header_len = 12 + int.from_bytes(data[8:12], "big")
    seg = 64 * 1024 + 16
    truncated = data[: header_len + 2 * seg]  # the last segment removed: the new last one is not final
    with pytest.raises(SealedFormatError):
        unseal(io.BytesIO(truncated), io.BytesIO(), KEY)
    swapped = (
        data[:header_len]
        + data[header_len + seg : header_len + 2 * seg]
        + data[header_len : header_len + seg]
        + data[header_len + 2 * seg :]
    )
    with pytest.raises(SealedFormatError):
        unseal(io.BytesIO(swapped), io.BytesIO(), KEY)
    with pytest.raises(SealedFormatError, match="magic"):
        unseal(io.BytesIO(b"not sealed at all"), io.BytesIO(), KEY)


DS = Dataset("visits_a", "hospital_a", (("patient_id", "string"), ("region", "string")))


def test_seal_dataset_checks_the_schema_and_commits_last(tmp_path):
    src = tmp_path / "v.csv"
    src.write_text("region,patient_id\nnorth,p1\n")
    with pytest.raises(CleanroomUserError, match="same names, same order"):
        sealing.seal_dataset(src, tmp_path / "s", "c1", DS, KEY)
    src.write_text("patient_id,region\np1,north\n")
    info, tmp = sealing.seal_dataset(src, tmp_path / "s", "c1", DS, KEY)
    assert sealing.completed(tmp_path / "s", "c1", DS, src) is None  # not committed yet
    sealing.commit(info, tmp)
    assert sealing.completed(tmp_path / "s", "c1", DS, src) == info
    back = io.BytesIO()
    with open(info.path, "rb") as fh:
        unseal(fh, back, KEY)
    assert back.getvalue() == src.read_bytes()
    src.write_text("patient_id,region\np2,south\n")
    assert sealing.completed(tmp_path / "s", "c1", DS, src) is None  # the source changed
    sealing.forget(tmp_path / "s", "c1", DS)
    assert not (tmp_path / "s" / "hospital_a" / "c1" / "visits_a.sealed.json").exists()


def test_missing_or_empty_source(tmp_path):
    with pytest.raises(CleanroomUserError, match="does not exist"):
        sealing.check_source(tmp_path / "nope.csv", DS)
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(CleanroomUserError, match="is empty"):
        sealing.check_source(tmp_path / "e.csv", DS)
