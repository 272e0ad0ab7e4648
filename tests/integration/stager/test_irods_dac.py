"""The DAC collection as the streamer finds it, against the iRODS stand-in (strict as iRODS: only an
object's own access rows count; a collection's inheritance flag gives new children its rows)."""

from __future__ import annotations

import uuid

import pytest
from irods.access import iRODSAccess

from include.stager.dac import check_dac_collection
from include.stager.errors import UserError
from include.stager.irods import IrodsAccount, IrodsClient

from .conftest import ZONE

DAC = f"/{ZONE}/dccn/DAC_3010000.01"


def _account(alice: IrodsAccount, user: str, password: str) -> IrodsAccount:
    return IrodsAccount(alice.host, alice.port, alice.zone, user, password)


@pytest.fixture
def streamer(alice):
    with IrodsClient(_account(alice, "stager-streamer", "streamer-secret")) as c:
        yield c


@pytest.fixture
def rods(alice):
    with IrodsClient(_account(alice, "rods", "rods")) as c:
        yield c


def test_the_devstack_dac_collection_is_set_up_as_the_repository_does(streamer, client, tmp_path):
    check_dac_collection(streamer, DAC)
    path = f"{DAC}/raw/t-{uuid.uuid4().hex[:8]}/sub"
    streamer.mkdirs(path)
    (tmp_path / "f").write_bytes(b"scan")
    sha = streamer.put(str(tmp_path / "f"), f"{path}/f.dat", lambda n: None)
    # the project's manager reads what the streamer wrote: the rows came from the DAC collection
    assert client.get(f"{path}/f.dat", str(tmp_path / "back"), sha, lambda n: None) == sha
    assert (tmp_path / "back").read_bytes() == b"scan"


def test_a_dac_collection_without_inheritance_is_refused(streamer, rods):
    coll = f"/{ZONE}/dccn/DAC_t{uuid.uuid4().hex[:8]}"
    rods.mkdirs(coll)
    rods.session.acls.set(iRODSAccess("write", coll, "stager-streamer"))
    with pytest.raises(UserError, match="inheritance off"):
        check_dac_collection(streamer, coll)
    rods.session.acls.set(iRODSAccess("inherit", coll))
    check_dac_collection(streamer, coll)
    rods.session.acls.set(iRODSAccess("read", coll, "stager-streamer"))
    with pytest.raises(UserError, match="no write access"):
        check_dac_collection(streamer, coll)
    rods.session.collections.remove(coll, recurse=True, force=True)


def test_a_dac_collection_the_streamer_cannot_see_is_refused(streamer):
    with pytest.raises(UserError, match="does not exist or stager-streamer may not read it"):
        check_dac_collection(streamer, f"/{ZONE}/dccn/DAC_missing{uuid.uuid4().hex[:6]}")


def test_writing_without_access_is_a_clear_user_error(streamer, tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(UserError, match="permission denied in the repository for stager-streamer"):
        streamer.put(str(tmp_path / "f"), f"/{ZONE}/home/alice/f-{uuid.uuid4().hex[:6]}", lambda n: None)


def test_an_admin_registers_a_file_of_the_server(rods, tmp_path):
    """``ireg`` (PHY_PATH_REG) by the admin: the file stays where it is and reads back through iRODS."""
    (tmp_path / "reg.bin").write_bytes(b"registered")
    path = f"/{ZONE}/home/rods/reg-{uuid.uuid4().hex[:8]}"
    rods.session.data_objects.register(str(tmp_path / "reg.bin"), path)
    assert rods.stat(path).size == 10
    with rods.session.data_objects.open(path, "r") as fh:
        assert fh.read() == b"registered"
    rods.session.data_objects.unregister(path)  # unregistered: the catalog forgets it, the file stays
    assert rods.kind(path) is None and (tmp_path / "reg.bin").read_bytes() == b"registered"
