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
from irods.access import iRODSAccess
from irods.meta import iRODSMeta
from irods.models import Collection, CollectionMeta, DataObject, DataObjectMeta, Group, User

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
    c.session.data_objects.create(f"{path}/o", force=True)  # rsDataObjCreate: open with O_CREAT|O_TRUNC
    assert c.stat(f"{path}/o").size == 0
    with c.session.data_objects.open(f"{path}/o", "w") as fh:
        fh.write(b"first")
    c.session.data_objects.create(f"{path}/copy", force=True)
    with pytest.raises(iexc.OVERWRITE_WITHOUT_FORCE_FLAG):  # rsDataObjCopy: an overwrite needs forceFlag
        c.session.data_objects.copy(f"{path}/o", f"{path}/copy")
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


# ---- access control, trash, GenQuery, ACL changes, AVUs, rename, register, users -----------------------------
# These need a second ordinary user and an admin. Against a real iRODS set IRODS_OTHER_USER/IRODS_OTHER_PASSWORD
# (a rodsuser) and IRODS_ADMIN_USER/IRODS_ADMIN_PASSWORD (a rodsadmin) as well; the stand-in has bob and rods.
@pytest.fixture(scope="module")
def other(account) -> IrodsAccount:
    return _second_account(account, "IRODS_OTHER", ("bob", "bob-secret"))


@pytest.fixture(scope="module")
def admin(account) -> IrodsAccount:
    return _second_account(account, "IRODS_ADMIN", ("rods", "rods"))


def _second_account(account: IrodsAccount, prefix: str, standin: tuple[str, str]) -> IrodsAccount:
    if REAL:
        user, password = os.environ.get(f"{prefix}_USER"), os.environ.get(f"{prefix}_PASSWORD")
        if not user or not password:
            pytest.fail(f"{prefix}_USER and {prefix}_PASSWORD are needed against a real iRODS")
        return IrodsAccount(account.host, account.port, account.zone, user, password)
    return IrodsAccount(account.host, account.port, account.zone, *standin)


def _put(c: IrodsClient, path: str, data: bytes = b"data") -> None:
    with c.session.data_objects.open(path, "w") as fh:
        fh.write(data)


def _read(c: IrodsClient, path: str) -> bytes:
    with c.session.data_objects.open(path, "r") as fh:
        return fh.read()


def _acl(c: IrodsClient, path: str) -> dict[str, str]:
    target = c.session.collections.get(path) if c.kind(path) == "coll" else c.session.data_objects.get(path)
    return {a.user_name: a.access_name for a in c.session.acls.get(target)}


def test_only_the_objects_own_access_rows_count(base, other):
    """A grant on a collection gives nothing on what is in it (cmlCheckDataObjOnly: no parent rows)."""
    c, path = base
    _put(c, f"{path}/o")
    c.session.acls.set(iRODSAccess("read", path, other.user))
    with IrodsClient(other) as o:
        with pytest.raises(iexc.CAT_NO_ACCESS_PERMISSION):
            _read(o, f"{path}/o")
        with pytest.raises(iexc.CAT_NO_ACCESS_PERMISSION):  # read on the collection: no write into it
            _put(o, f"{path}/theirs")
    c.session.acls.set(iRODSAccess("write", path, other.user))
    with IrodsClient(other) as o:
        with pytest.raises(iexc.CAT_NO_ACCESS_PERMISSION):  # write on the collection: still not on o
            _read(o, f"{path}/o")
        _put(o, f"{path}/theirs")  # write on the collection: may create in it, and owns what it creates
        assert _acl(o, f"{path}/theirs") == {other.user: "own"}
    with pytest.raises(iexc.CAT_NO_ACCESS_PERMISSION):  # the collection's owner has no row on it
        _read(c, f"{path}/theirs")
    with IrodsClient(other) as o:
        o.session.data_objects.unlink(f"{path}/theirs", force=True)


def test_inheritance_gives_new_children_the_parents_rows(base, other):
    c, path = base
    c.mkdirs(f"{path}/before")
    c.session.acls.set(iRODSAccess("read", path, other.user))
    c.session.acls.set(iRODSAccess("inherit", path))
    assert c.session.collections.get(path).inheritance
    _put(c, f"{path}/after", b"shared")
    c.mkdirs(f"{path}/sub/deeper")
    assert _acl(c, f"{path}/after") == {account_user(c): "own", other.user: "read_object"}
    assert _acl(c, f"{path}/sub/deeper")[other.user] == "read_object"
    assert c.session.collections.get(f"{path}/sub").inheritance  # the flag is inherited too
    assert other.user not in _acl(c, f"{path}/before")  # what existed keeps its rows
    with IrodsClient(other) as o:
        assert _read(o, f"{path}/after") == b"shared"
    c.session.acls.set(iRODSAccess("noinherit", path))
    assert not c.session.collections.get(path).inheritance


def account_user(c: IrodsClient) -> str:
    return c.account.user


def test_an_admin_does_not_bypass_access_control(base, admin):
    c, path = base
    _put(c, f"{path}/private", b"secret")
    with IrodsClient(admin) as a:
        with pytest.raises(iexc.CAT_NO_ACCESS_PERMISSION):
            _read(a, f"{path}/private")
        with pytest.raises(iexc.CAT_NO_ACCESS_PERMISSION):  # ichmod without -M: not the owner
            a.session.acls.set(iRODSAccess("read", f"{path}/private", admin.user))
        a.session.acls.set(iRODSAccess("read", f"{path}/private", admin.user), admin=True)  # ichmod -M
        assert _read(a, f"{path}/private") == b"secret"


def test_admin_mode_needs_an_admin(base, other):
    c, path = base
    _put(c, f"{path}/x")
    with IrodsClient(other) as o, pytest.raises(iexc.CAT_NO_ACCESS_PERMISSION):
        o.session.acls.set(iRODSAccess("read", f"{path}/x", other.user), admin=True)


def test_access_changes_recursive_and_null(base, other):
    c, path = base
    c.mkdirs(f"{path}/a/b")
    _put(c, f"{path}/a/b/f")
    c.session.acls.set(iRODSAccess("write", path, other.user), recursive=True)
    assert _acl(c, f"{path}/a/b/f")[other.user] == "modify_object"
    assert _acl(c, f"{path}/a")[other.user] == "modify_object"
    c.session.acls.set(iRODSAccess("null", f"{path}/a/b/f", other.user))
    assert other.user not in _acl(c, f"{path}/a/b/f")
    with IrodsClient(other) as o, pytest.raises(iexc.CAT_NO_ACCESS_PERMISSION):  # write is not own
        o.session.acls.set(iRODSAccess("read", f"{path}/a", o.account.user))
    with pytest.raises(iexc.CAT_INVALID_USER):
        c.session.acls.set(iRODSAccess("read", path, "no-such-user-" + uuid.uuid4().hex[:6]))


def test_unlink_without_force_moves_to_the_trash(base, account):
    c, path = base
    _put(c, f"{path}/t", b"keep me")
    c.session.data_objects.unlink(f"{path}/t")
    rest = path[len(f"/{account.zone}/home/{account.user}/"):]
    trashed = f"/{account.zone}/trash/home/{account.user}/{rest}/t"
    assert c.kind(f"{path}/t") is None and c.kind(trashed) == "obj"
    assert _read(c, trashed) == b"keep me"
    c.session.data_objects.unlink(trashed)  # in the trash: removed for good
    assert c.kind(trashed) is None
    _put(c, f"{path}/f")
    c.session.data_objects.unlink(f"{path}/f", force=True)
    assert c.kind(f"{path}/f") is None and c.kind(f"/{account.zone}/trash/home/{account.user}/{rest}/f") is None
    c.session.collections.remove(f"/{account.zone}/trash/home/{account.user}/{rest}", recurse=True, force=True)


def test_genquery_hides_rows_the_user_cannot_read(base, other, admin):
    """Strict ACLs are on as iRODS ships (4.3 core.re ``acAclPolicy`` STRICT; always in 5.x): GenQuery
    returns only data objects and collections the user may read; a rodsadmin sees every row."""
    c, path = base
    _put(c, f"{path}/hidden")
    with IrodsClient(other) as o:
        assert o.kind(path) is None and o.stat(f"{path}/hidden") is None
        assert len(o.session.query(DataObject.name).filter(Collection.name == path).all()) == 0
    c.session.acls.set(iRODSAccess("read", path, other.user))
    with IrodsClient(other) as o:  # the collection now, the object still not
        assert o.kind(path) == "coll" and o.kind(f"{path}/hidden") is None
    c.session.acls.set(iRODSAccess("read", f"{path}/hidden", other.user))
    with IrodsClient(other) as o:
        assert o.kind(f"{path}/hidden") == "obj"
    with IrodsClient(admin) as a:
        assert a.kind(f"{path}/hidden") == "obj"


def test_case_insensitive_query_folds_the_column(base):
    c, path = base
    c.mkdirs(f"{path}/MiXed")
    _put(c, f"{path}/MiXed/Obj")
    q = c.session.query(DataObject.name, case_sensitive=True).filter(Collection.name == f"{path}/MiXed")
    assert [r[DataObject.name] for r in q] == ["Obj"]
    q = c.session.query(DataObject.name, case_sensitive=False).filter(
        Collection.name == f"{path}/mixed", DataObject.name == "obj")
    assert [r[DataObject.name] for r in q] == ["Obj"]
    assert len(c.session.query(DataObject.name).filter(Collection.name == f"{path}/mixed").all()) == 0


def test_avus_add_set_modify_remove_and_query(base):
    c, path = base
    _put(c, f"{path}/m")
    obj = c.session.data_objects.get(f"{path}/m")
    obj.metadata.add("project", "3010000.01", "id")
    with pytest.raises(iexc.CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME):
        obj.metadata.add("project", "3010000.01", "id")
    obj.metadata.add("modality", "MRI")
    obj.metadata.add("modality", "MEG")
    obj.metadata.set("modality", "OPM")
    assert sorted((m.name, m.value) for m in c.session.metadata.get(DataObject, f"{path}/m")) == [
        ("modality", "OPM"), ("project", "3010000.01")]
    c.session.metadata.get(DataObject, f"{path}/m")
    obj = c.session.data_objects.get(f"{path}/m")
    obj.metadata.remove("modality", "OPM")
    coll = c.session.collections.get(path)
    coll.metadata.add("dac", "yes")
    rows = c.session.query(DataObject.name).filter(
        Collection.name == path, DataObjectMeta.name == "project", DataObjectMeta.value == "3010000.01").all()
    assert [r[DataObject.name] for r in rows] == ["m"]
    rows = c.session.query(Collection.name).filter(CollectionMeta.name == "dac", Collection.name == path).all()
    assert [r[Collection.name] for r in rows] == [path]
    assert [(m.name, m.value, m.units) for m in c.session.metadata.get(DataObject, f"{path}/m")] == [
        ("project", "3010000.01", "id")]


def test_avus_need_write_access(base, other):
    c, path = base
    _put(c, f"{path}/m")
    c.session.acls.set(iRODSAccess("read", f"{path}/m", other.user))
    with IrodsClient(other) as o, pytest.raises(iexc.CAT_NO_ACCESS_PERMISSION):
        o.session.metadata.add(DataObject, f"{path}/m", iRODSMeta("a", "b"))


def test_rename_objects_and_collections(base, other):
    c, path = base
    c.mkdirs(f"{path}/from/inner")
    _put(c, f"{path}/from/inner/f", b"moved")
    c.session.data_objects.move(f"{path}/from/inner/f", f"{path}/from/g")
    assert c.kind(f"{path}/from/inner/f") is None and _read(c, f"{path}/from/g") == b"moved"
    c.session.collections.move(f"{path}/from", f"{path}/to")
    assert c.kind(f"{path}/from") is None and c.kind(f"{path}/to/inner") == "coll"
    assert _read(c, f"{path}/to/g") == b"moved"
    _put(c, f"{path}/to/h")
    with pytest.raises(iexc.CAT_NAME_EXISTS_AS_DATAOBJ):
        c.session.data_objects.move(f"{path}/to/g", f"{path}/to/h")
    c.session.acls.set(iRODSAccess("write", f"{path}/to/g", other.user))
    c.session.acls.set(iRODSAccess("write", f"{path}/to", other.user))
    with IrodsClient(other) as o, pytest.raises(iexc.CAT_NO_ACCESS_PERMISSION):  # renaming needs own
        o.session.data_objects.move(f"{path}/to/g", f"{path}/to/g2")


# python-irodsclient 3.3 has no class for PATH_REG_NOT_ALLOWED (lib/core/include/irods/rodsErrorTable.h)
PATH_REG_NOT_ALLOWED = iexc.iRODSExceptionMeta.codes.get(-129000) or type(
    "PATH_REG_NOT_ALLOWED", (iexc.SystemException,), {"code": -129000})


def test_register_needs_an_admin(base, tmp_path):
    c, path = base
    f = tmp_path / "reg.bin"
    f.write_bytes(b"x")
    with pytest.raises(PATH_REG_NOT_ALLOWED):
        c.session.data_objects.register(str(f), f"{path}/reg.bin")


def test_user_and_group_queries(account):
    with IrodsClient(account) as c:
        me = c.session.users.get(account.user)
        assert (me.name, me.type, me.zone) == (account.user, "rodsuser", account.zone)
        groups = [r[Group.name] for r in c.session.query(Group.name).filter(User.name == account.user)]
        assert "public" in groups
        with pytest.raises(iexc.UserDoesNotExist):
            c.session.users.get("no-such-user-" + uuid.uuid4().hex[:6])


def test_no_access_is_a_user_error_with_the_real_code(base, other, tmp_path):
    c, path = base
    c.mkdirs(f"{path}/closed")
    (tmp_path / "f").write_bytes(b"x")
    with IrodsClient(other) as o:
        with pytest.raises(iexc.CAT_NO_ACCESS_PERMISSION) as info:
            o.session.collections.create(f"{path}/closed/x")
        assert info.value.code == -818000
        with pytest.raises(UserError, match="permission denied"):
            o.put(str(tmp_path / "f"), f"{path}/closed/f", lambda n: None)
