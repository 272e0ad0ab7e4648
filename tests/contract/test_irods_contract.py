"""The iRODS adapter (python-irodsclient) against a real iRODS when IRODS_HOST, IRODS_PORT, IRODS_USER,
IRODS_PASSWORD and IRODS_ZONE are set, else against the devstack stand-in.

The user must be an ordinary user (``rodsuser``) with a home collection: the permission test
expects the zone's root collection to be read-only for it.
"""

from __future__ import annotations

import os
import threading
import uuid

import irods.exception as iexc
import irods.keywords as kw
import pytest
from irods.models import Collection, DataObject

from include.stager.errors import UserError
from include.stager.irods import INTERMEDIATE_REPLICA_ACCESS, IrodsAccount, IrodsClient

pytestmark = pytest.mark.contract
REAL = all(os.environ.get(k)
           for k in ("IRODS_HOST", "IRODS_PORT", "IRODS_USER", "IRODS_PASSWORD", "IRODS_ZONE"))


@pytest.fixture(scope="module")
def account(request) -> IrodsAccount:
    if REAL:
        e = os.environ
        return IrodsAccount(e["IRODS_HOST"], int(e["IRODS_PORT"]), e["IRODS_ZONE"], e["IRODS_USER"],
                            e["IRODS_PASSWORD"])
    v = request.getfixturevalue("devstack").start("irods")
    return IrodsAccount("127.0.0.1", int(v["SDP_IRODS_PORT"]), "nl.ru.donders", "alice", "alice-secret")


@pytest.fixture
def base(account):
    path = f"/{account.zone}/home/{account.user}/contract-{uuid.uuid4().hex[:8]}"
    with IrodsClient(account) as c:
        c.mkdirs(path)
        yield c, path
        c.session.collections.remove(path, recurse=True, force=True)


def test_login_and_a_wrong_password(account):
    with IrodsClient(account) as c:
        c.login()
    bad = IrodsAccount(account.host, account.port, account.zone, account.user, account.password + "x")
    with IrodsClient(bad) as c, pytest.raises(UserError, match="rejected"):
        c.login()


def test_collections_nested_and_empty(base):
    c, path = base
    c.mkdirs(f"{path}/a/b c/ü")
    c.mkdirs(f"{path}/a/b c/ü")  # idempotent
    assert c.kind(f"{path}/a/b c") == "coll" and c.kind(f"{path}/nope") is None
    colls, files = c.walk(path)
    assert colls == ["a", "a/b c", "a/b c/ü"] and files == {}


def test_put_get_checksums_and_overwrite(base, tmp_path):
    c, path = base
    src = tmp_path / "data ü.bin"
    src.write_bytes(os.urandom(5 * 1024 * 1024 + 3))
    moved = []
    sum1 = c.put(str(src), f"{path}/data ü.bin", moved.append)
    assert sum1.startswith("sha2:") and sum(moved) == src.stat().st_size
    st = c.stat(f"{path}/data ü.bin")
    assert (st.size, st.checksum) == (src.stat().st_size, sum1)
    assert c.kind(f"{path}/data ü.bin") == "obj"
    out = tmp_path / "back"
    assert c.get(f"{path}/data ü.bin", str(out), sum1, lambda n: None) == sum1
    assert out.read_bytes() == src.read_bytes()

    src.write_bytes(b"short")
    sum2 = c.put(str(src), f"{path}/data ü.bin", lambda n: None)
    assert sum2 != sum1 and c.stat(f"{path}/data ü.bin").size == 5
    assert c.checksum(f"{path}/data ü.bin") == sum2


def test_empty_object(base, tmp_path):
    c, path = base
    (tmp_path / "e").write_bytes(b"")
    s = c.put(str(tmp_path / "e"), f"{path}/e", lambda n: None)
    assert c.stat(f"{path}/e") .size == 0 and s == "sha2:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


def test_missing_things_are_user_errors(base, tmp_path):
    c, path = base
    with pytest.raises(UserError, match="does not exist"):
        c.get(f"{path}/missing", str(tmp_path / "x"), "sha2:x", lambda n: None)
    with pytest.raises(iexc.CAT_UNKNOWN_COLLECTION):
        c.session.data_objects.open(f"{path}/no/such/coll/f", "w")
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(UserError, match="does not exist"):
        c.put(str(tmp_path / "f"), f"{path}/no/such/f", lambda n: None)


def test_overwrite_rules(base):
    c, path = base
    with c.session.data_objects.open(f"{path}/o", "w") as fh:
        fh.write(b"first")
    with pytest.raises(iexc.OVERWRITE_WITHOUT_FORCE_FLAG):
        c.session.data_objects.create(f"{path}/o")
    with c.session.data_objects.open(f"{path}/o", "w") as fh:  # open for write truncates
        fh.write(b"2nd")
    with c.session.data_objects.open(f"{path}/o", "r") as fh:
        fh.seek(1)
        assert fh.read() == b"nd"
    with pytest.raises(iexc.CAT_NAME_EXISTS_AS_DATAOBJ):
        c.session.collections.create(f"{path}/o", recurse=False)


def test_permission_denied_is_a_user_error(account, tmp_path):
    with IrodsClient(account) as c:
        with pytest.raises(UserError, match="permission denied"):
            c.mkdirs(f"/{account.zone}/contract-forbidden-{uuid.uuid4().hex[:6]}")


def test_query_paging_over_500_rows(base):
    c, path = base
    for i in range(510):
        c.session.collections.create(f"{path}/c{i:03d}", recurse=False)
    colls, _ = c.walk(path)
    assert len(colls) == 510


def test_parallel_streams_put_and_get_64mib(base, tmp_path):
    """python-irodsclient parallel put/get (replica token, concurrent opens, replica_close, final close)."""
    c, path = base
    src = tmp_path / "big.bin"
    with open(src, "wb") as fh:
        for _ in range(16):
            fh.write(os.urandom(4 << 20))
    moved = []
    lock = threading.Lock()

    def count(n):
        with lock:
            moved.append(n)

    sum1 = c.put(str(src), f"{path}/big.bin", count, num_threads=4)
    assert sum(moved) == 64 << 20
    st = c.stat(f"{path}/big.bin")
    assert (st.size, st.checksum) == (64 << 20, sum1)
    replica = c.session.query(DataObject.replica_status).filter(
        Collection.name == path, DataObject.name == "big.bin").one()
    assert replica[DataObject.replica_status] == "1"  # good: finalized by the first stream's close
    out = tmp_path / "back.bin"
    assert c.get(f"{path}/big.bin", str(out), sum1, lambda n: None, num_threads=4) == sum1
    assert out.stat().st_size == 64 << 20


def test_an_open_replica_is_intermediate_and_needs_its_token(base, account):
    """iRODS 4.2.9+ logical locking, which the parallel streams rely on."""
    c, path = base
    obj = f"{path}/locked"
    objects = c.session.data_objects
    first, raw = objects.open_with_FileRaw(obj, "w")
    first.write(b"0123456789")
    first.flush()
    token, hierarchy = raw.replica_access_info()
    assert token and hierarchy
    status = c.session.query(DataObject.replica_status).filter(
        Collection.name == path, DataObject.name == "locked").one()[DataObject.replica_status]
    assert status == "2"  # intermediate
    with IrodsClient(account) as other:
        for mode in ("r", "a"):  # the replica named (no voting), without the token
            with pytest.raises(INTERMEDIATE_REPLICA_ACCESS):
                other.session.data_objects.open(obj, mode, create=False, **{kw.RESC_HIER_STR_KW: hierarchy})
        second = other.session.data_objects.open(obj, "a", create=False, finalize_on_close=False,
                                                  **{kw.REPLICA_TOKEN_KW: token, kw.RESC_HIER_STR_KW: hierarchy})
        second.seek(10)
        second.write(b"abcdef")
        second.close()  # REPLICA_CLOSE: no finalization
    first.close()  # finalizes
    st = c.stat(obj)
    assert st.size == 16
    with objects.open(obj, "r") as fh:
        assert fh.read() == b"0123456789abcdef"
