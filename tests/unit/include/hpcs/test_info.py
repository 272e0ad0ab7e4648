import pytest
import yaml

from include.hpcs.info import DatasetInfo, info_file_name

SHA = "ab" * 64


def test_hpcs_format():
    info = DatasetInfo.build(
        remote_dir="/scratch/project/data",
        archive="ds.tar.gz.c4gh",
        size=42,
        checksum=SHA,
        secret_path="client_abc/ds",
        access_role="client_abc-ds",
        spiffe_id="spiffe://hpcs/c/abc/s/ds",
        compression="gzip",
    )
    data = yaml.safe_load(info.to_yaml())
    assert set(data) == {"info"}
    assert {"path_at_rest", "secret_path", "access_role", "checksum", "spiffeID"} <= set(data["info"])
    assert data["info"]["path_at_rest"] == "/scratch/project/data/ds.tar.gz.c4gh"
    assert data["info"]["checksum"] == SHA
    assert data["info"]["size"] == 42
    assert DatasetInfo.from_yaml(info.to_yaml()) == info
    assert info_file_name("ds") == "ds.info.yaml"


def test_checksum_must_be_sha512():
    with pytest.raises(ValueError, match="sha512"):
        DatasetInfo.build(
            remote_dir="/x",
            archive="a",
            size=1,
            checksum="abc",
            secret_path="s",
            access_role="r",
            spiffe_id="spiffe://x/y",
            compression="none",
        )


def test_not_an_info_file():
    with pytest.raises(ValueError, match="not an HPCS info file"):
        DatasetInfo.from_yaml("- a\n- b\n")
