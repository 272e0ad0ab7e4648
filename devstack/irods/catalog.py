"""The stand-in's catalog: collections, data objects and access, kept in memory and saved as JSON.

Physical bytes live in ``<state>/vault/<data id>``. The catalog snapshot (``catalog.json``) is
written atomically after changes, so the stand-in keeps its content across restarts.

Logical locking as in iRODS 4.2.9+: opening a replica for writing makes it *intermediate*
(``D_REPL_STATUS`` 2) and issues a replica token; until the finalizing close, opening it again
(read or write) needs that token (``replicaToken``), else ``INTERMEDIATE_REPLICA_ACCESS``. Every
descriptor opened with the token counts as an opener; the replica is finalized (size, checksum
cleared when written, status good, unlocked) when a finalizing close was asked for and the last
opener has closed. Locks live in memory only, like the open descriptors of a server's agents.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

# access_type tokens (plugins/database/src/icatSysInserts.sql, with the 4.3 underscore names)
ACCESS_TYPES = {
    "null": 1000, "execute": 1010, "read_annotation": 1020, "read_system_metadata": 1030,
    "read_metadata": 1040, "read_object": 1050, "write_annotation": 1060, "create_metadata": 1070,
    "modify_metadata": 1080, "delete_metadata": 1090, "administer_object": 1100, "create_object": 1110,
    "modify_object": 1120, "delete_object": 1130, "create_token": 1140, "delete_token": 1150,
    "curate": 1160, "own": 1200,
}
ACCESS_NAMES = {v: k for k, v in ACCESS_TYPES.items()}
READ, WRITE, OWN = 1050, 1120, 1200
READ_METADATA, CREATE_METADATA, DELETE_METADATA, DELETE_OBJECT = 1040, 1070, 1090, 1130
# the client-side names ichmod accepts (chlModAccessControl: AP_READ "read", AP_WRITE "write", AP_NULL)
LEVELS = {**ACCESS_TYPES, "read": READ, "write": WRITE}


class IrodsError(Exception):
    """An iRODS error code with a message, sent back as the API reply status."""

    def __init__(self, code: int, msg: str):
        super().__init__(msg)
        self.code = code
        self.msg = msg


CAT_NO_ROWS_FOUND = -808000
CAT_UNKNOWN_COLLECTION = -814000
CAT_UNKNOWN_FILE = -817000
CAT_NO_ACCESS_PERMISSION = -818000
CAT_COLLECTION_NOT_EMPTY = -821000
CAT_INVALID_AUTHENTICATION = -826000
CAT_INVALID_USER = -827000
CAT_INVALID_ARGUMENT = -816000
CAT_INSUFFICIENT_PRIVILEGE_LEVEL = -830000
CAT_NAME_EXISTS_AS_COLLECTION = -833000
CAT_NAME_EXISTS_AS_DATAOBJ = -834000
CAT_SUCCESS_BUT_WITH_NO_INFO = -819000
CAT_UNKNOWN_SPECIFIC_QUERY = -853000
CAT_INVALID_RESOURCE = -831000
CAT_INVALID_USER_TYPE = -820000
CAT_INVALID_GROUP = -829000
CAT_RECURSIVE_MOVE = -837000
CAT_USER_NOT_IN_GROUP = -827000  # reported as CAT_INVALID_USER
OVERWRITE_WITHOUT_FORCE_FLAG = -312000
OBJ_PATH_DOES_NOT_EXIST = -358000
USER_INPUT_PATH_ERR = -317000
USER_FILE_DOES_NOT_EXIST = -310000
SYS_UNMATCHED_API_NUM = -12000
SYS_FILE_DESC_OUT_OF_RANGE = -19000
SYS_INVALID_INPUT_PARAM = -130000
SYS_NOT_SUPPORTED = -66000
SYS_NO_API_PRIV = -13000
SYS_CROSS_ZONE_MV_NOT_SUPPORTED = -109000
INTERMEDIATE_REPLICA_ACCESS = -405000
PATH_REG_NOT_ALLOWED = -129000
SYS_INVALID_FILE_PATH = -31000


def now() -> str:
    return f"{int(time.time()):011d}"


def parent_of(path: str) -> str:
    head = path.rsplit("/", 1)[0]
    return head or "/"


def normalize(path: str) -> str:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not path.startswith("/") or ".." in parts:
        raise IrodsError(USER_INPUT_PATH_ERR, f"not an absolute logical path: {path!r}")
    return "/" + "/".join(parts)


@dataclass
class Coll:
    id: int
    name: str
    owner: str
    zone: str
    ctime: str
    mtime: str
    acl: dict[str, int] = field(default_factory=dict)
    inherit: bool = False
    meta: list[dict] = field(default_factory=list)  # {"id", "a", "v", "u", "ctime", "mtime"}
    comments: str = ""


@dataclass
class DataObj:
    id: int
    coll: str
    name: str
    owner: str
    zone: str
    ctime: str
    mtime: str
    size: int = 0
    checksum: str = ""
    acl: dict[str, int] = field(default_factory=dict)
    meta: list[dict] = field(default_factory=list)
    data_type: str = "generic"
    comments: str = ""
    expiry: str = ""
    phys: str = ""  # a registered file's physical path; "" = the stand-in's vault

    @property
    def path(self) -> str:
        return f"{self.coll.rstrip('/')}/{self.name}"


@dataclass
class ReplicaLock:
    token: str
    openers: int = 1
    written: bool = False
    finalize: bool = False
    reg_chksum: bool = False


def sha2_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return "sha2:" + base64.b64encode(digest.digest()).decode()


class Catalog:
    """Collections, data objects, users and groups, with iRODS's access rules.

    Access as the catalog checks it (``cmlCheckDir`` / ``cmlCheckDataObjOnly`` in
    plugins/database/src/db_plugin.cpp): only the access rows of the object itself count, for the
    user or any group the user is in; nothing is inherited from the parent at check time and a
    ``rodsadmin`` is no exception (``ichmod -M``, the ``admin:`` prefix, is how an admin changes
    access it does not have). The inheritance flag of a collection copies its rows onto NEW
    children when they are registered (``chlRegColl`` SQL 4 and ``chlRegDataObj`` SQL 7: the new
    child gets the parent's rows *instead of* an ``own`` row for its creator).
    """

    def __init__(self, state: Path, zone: str, users: dict, acls: dict[str, dict[str, str]],
                 inherit: list[str] | tuple[str, ...] = ()):
        self.state = state
        self.zone = zone
        self.vault = state / "vault"
        self.vault.mkdir(parents=True, exist_ok=True)
        self.file = state / "catalog.json"
        self.lock = threading.RLock()
        self.colls: dict[str, Coll] = {}
        self.objs: dict[str, DataObj] = {}
        # name -> {"id", "password", "type", "zone", "info", "comment", "ctime", "mtime", "meta", "members"}
        self.users: dict[str, dict] = {}
        self.next_id = 10000
        self.next_avu = 20000
        self.avu_ids: dict[tuple[str, str, str], int] | None = None
        self.resc_meta: list[dict] = []  # the AVUs of the one resource, demoResc
        self.dirty = False
        self.locks: dict[int, ReplicaLock] = {}  # data id -> the write session of an intermediate replica
        self._load()
        for name, info in {"public": {"type": "rodsgroup"}, **users}.items():
            self._ensure_user(name, info.get("type", "rodsuser"), info.get("password"))
        for path in ("/", f"/{zone}", f"/{zone}/home", f"/{zone}/trash", f"/{zone}/trash/home"):
            self._ensure_coll(path, "rods")
        for name, info in users.items():
            if info.get("type", "rodsuser") != "rodsgroup":
                self._ensure_coll(f"/{zone}/home/{name}", name)
                self._ensure_coll(f"/{zone}/trash/home/{name}", name)
        for path, grants in acls.items():
            coll = self._ensure_coll(normalize(path), "rods")
            for user, level in grants.items():
                coll.acl[user] = LEVELS[level]
        for path in inherit:
            self._ensure_coll(normalize(path), "rods").inherit = True
        self.save()

    # ---- persistence -------------------------------------------------------------------------
    def _load(self) -> None:
        if not self.file.exists():
            return
        doc = json.loads(self.file.read_text())
        self.next_id = doc["next_id"]
        self.next_avu = doc.get("next_avu", self.next_avu)
        self.colls = {c["name"]: Coll(**c) for c in doc["colls"]}
        self.users = doc.get("users", {})
        self.resc_meta = doc.get("resc_meta", [])
        self.objs = {}
        for o in doc["objs"]:
            obj = DataObj(**o)
            self.objs[obj.path] = obj

    def save(self) -> None:
        with self.lock:
            doc = {"next_id": self.next_id, "next_avu": self.next_avu,
                   "colls": [asdict(c) for c in self.colls.values()],
                   "objs": [asdict(o) for o in self.objs.values()], "users": self.users,
                   "resc_meta": self.resc_meta}
            text = json.dumps(doc)
            self.dirty = False
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.file)

    def mark(self) -> None:
        self.dirty = True

    # ---- helpers --------------------------------------------------------------------------------
    def new_id(self) -> int:
        with self.lock:
            self.next_id += 1
            return self.next_id

    def _ensure_user(self, name: str, utype: str, password: str | None) -> dict:
        user = self.users.get(name)
        if user is None:
            user = {"id": self.new_id(), "password": password or "", "type": utype, "zone": self.zone,
                    "info": "", "comment": "", "ctime": now(), "mtime": now(), "meta": [], "members": []}
            self.users[name] = user
            if utype != "rodsgroup":
                self.users["public"]["members"].append(name)  # chlRegUserRE: every user joins public
            self.mark()
        elif password is not None:
            user["password"], user["type"] = password, utype
        return user

    def _ensure_coll(self, path: str, owner: str) -> Coll:
        if path in self.colls:
            return self.colls[path]
        if path != "/":
            self._ensure_coll(parent_of(path), owner)
        coll = Coll(id=self.new_id(), name=path, owner=owner, zone=self.zone, ctime=now(), mtime=now(),
                    acl={owner: OWN})
        self.colls[path] = coll
        self.mark()
        return coll

    def is_admin(self, user: str) -> bool:
        return self.users.get(user, {}).get("type") == "rodsadmin"

    def principals(self, user: str) -> set[str]:
        """The user and every group the user is in (R_USER_GROUP)."""
        return {user} | {g for g, info in self.users.items()
                         if info.get("type") == "rodsgroup" and user in info.get("members", [])}

    def entity(self, path: str) -> Coll | DataObj | None:
        return self.objs.get(path) or self.colls.get(path)

    def access(self, user: str, path: str) -> int:
        """The user's access level on ``path``: its own access rows only (no ancestors, no admin bypass)."""
        item = self.entity(path)
        if item is None:
            return 0
        who = self.principals(user)
        return max((level for name, level in item.acl.items() if name in who), default=0)

    def require(self, user: str, path: str, level: int) -> None:
        if self.access(user, path) < level:
            raise IrodsError(CAT_NO_ACCESS_PERMISSION,
                             f"user {user} lacks {ACCESS_NAMES.get(level, level)} on {path}")

    def physical(self, obj: DataObj) -> Path:
        return Path(obj.phys) if obj.phys else self.vault / str(obj.id)

    def _new_acl(self, user: str, parent: Coll) -> dict[str, int]:
        """The access rows of a new child of ``parent``: the parent's when it inherits, else own for the creator."""
        return dict(parent.acl) if parent.inherit else {user: OWN}

    # ---- collections ----------------------------------------------------------------------------
    def create_coll(self, user: str, path: str, recursive: bool) -> None:
        path = normalize(path)
        with self.lock:
            if path in self.objs:
                raise IrodsError(CAT_NAME_EXISTS_AS_DATAOBJ, f"{path} exists as a data object")
            if path in self.colls:
                if recursive:
                    return
                raise IrodsError(CAT_NAME_EXISTS_AS_COLLECTION, f"{path} exists")
            parent = parent_of(path)
            if parent not in self.colls and not recursive:
                raise IrodsError(CAT_UNKNOWN_COLLECTION, f"parent collection {parent} does not exist")
            missing = [path]
            while parent_of(missing[-1]) not in self.colls:
                nxt = parent_of(missing[-1])
                if nxt in self.objs:
                    raise IrodsError(CAT_NAME_EXISTS_AS_DATAOBJ, f"{nxt} is a data object")
                missing.append(nxt)
            # rsMkCollR registers each missing level with chlRegColl: write on the parent of each
            self.require(user, parent_of(missing[-1]), WRITE)
            for p in reversed(missing):
                self._reg_coll(user, p)

    def _reg_coll(self, user: str, path: str) -> Coll:
        parent = self.colls[parent_of(path)]
        coll = Coll(id=self.new_id(), name=path, owner=user, zone=self.zone, ctime=now(), mtime=now(),
                    acl=self._new_acl(user, parent), inherit=parent.inherit)
        self.colls[path] = coll
        self.mark()
        return coll

    def remove_coll(self, user: str, path: str, recursive: bool, force: bool = True) -> None:
        """``irm -r``: without force the collection moves to the trash (rsRmColl.cpp ``rsMvCollToTrash``)."""
        path = normalize(path)
        with self.lock:
            if path not in self.colls:
                raise IrodsError(CAT_UNKNOWN_COLLECTION, f"collection {path} does not exist")
            self.require(user, path, DELETE_OBJECT)
            prefix = path.rstrip("/") + "/"
            inner_objs = [p for p in self.objs if p.startswith(prefix)]
            inner_colls = [p for p in self.colls if p.startswith(prefix)]
            if (inner_objs or inner_colls) and not recursive:
                raise IrodsError(CAT_COLLECTION_NOT_EMPTY, f"collection {path} is not empty")
            for p in inner_objs:
                self.require(user, p, DELETE_OBJECT)
            for p in inner_colls:
                self.require(user, p, DELETE_OBJECT)
            if not force and not self.in_trash(path):
                self._rename_coll(path, self._trash_path(user, path, is_coll=True))
                return
            for p in inner_objs:
                self._drop_obj(self.objs.pop(p))
            for p in inner_colls:
                del self.colls[p]
            del self.colls[path]
            self.mark()

    # ---- trash (rsRmColl.cpp rsMkTrashPath, rsDataObjUnlink.cpp rsMvDataObjToTrash) ------------------
    def in_trash(self, path: str) -> bool:
        return path == f"/{self.zone}/trash" or path.startswith(f"/{self.zone}/trash/")

    def _trash_path(self, user: str, path: str, is_coll: bool) -> str:
        rest = path[len(f"/{self.zone}/"):]
        if rest.startswith(f"home/{user}/"):
            rest = rest[len(f"home/{user}/"):]
        target = f"/{self.zone}/trash/home/{user}/{rest}"
        coll = parent_of(target)
        existing = coll
        while existing not in self.colls:
            existing = parent_of(existing)
        missing = []
        p = coll
        while p != existing:
            missing.append(p)
            p = parent_of(p)
        for p in reversed(missing):  # the trash collections belong to the user
            parent = self.colls[parent_of(p)]
            self.colls[p] = Coll(id=self.new_id(), name=p, owner=user, zone=self.zone, ctime=now(),
                                 mtime=now(), acl={user: OWN} if not parent.inherit else dict(parent.acl))
        while target in self.colls or target in self.objs:  # appendRandomToPath
            target = f"{target}.{uuid.uuid4().int % 10**10}"
        return target

    # ---- rename (db_rename_object_op / db_move_object_op) -----------------------------------------------
    def rename(self, user: str, src: str, dst: str, kind: str) -> None:
        src, dst = normalize(src), normalize(dst)
        with self.lock:
            is_coll = src in self.colls
            if src not in self.colls and src not in self.objs:
                raise IrodsError(CAT_UNKNOWN_FILE if kind == "obj" else CAT_UNKNOWN_COLLECTION,
                                 f"{src} does not exist")
            if kind == "obj" and is_coll or kind == "coll" and not is_coll:
                raise IrodsError(CAT_INVALID_ARGUMENT if kind == "coll" else CAT_UNKNOWN_FILE,
                                 f"{src} is not a {'collection' if kind == 'coll' else 'data object'}")
            if dst in self.objs:
                raise IrodsError(CAT_NAME_EXISTS_AS_DATAOBJ, f"{dst} exists as a data object")
            if dst in self.colls:
                raise IrodsError(CAT_NAME_EXISTS_AS_COLLECTION, f"{dst} exists as a collection")
            if is_coll and (dst + "/").startswith(src.rstrip("/") + "/"):
                raise IrodsError(CAT_RECURSIVE_MOVE, f"cannot move {src} into itself")
            if parent_of(dst) not in self.colls:
                raise IrodsError(CAT_UNKNOWN_COLLECTION, f"collection {parent_of(dst)} does not exist")
            # db_rename_object_op / db_move_object_op: own on what moves, modify_object on a new parent
            self.require(user, src, OWN)
            if parent_of(dst) != parent_of(src):
                self.require(user, parent_of(dst), WRITE)
            if is_coll:
                self._rename_coll(src, dst)
            else:
                obj = self.objs.pop(src)
                if obj.id in self.locks:
                    self.objs[src] = obj
                    raise IrodsError(INTERMEDIATE_REPLICA_ACCESS, f"{src} is intermediate (opened for writing)")
                obj.coll, obj.name = parent_of(dst), dst.rsplit("/", 1)[1]
                self.objs[dst] = obj
                self.mark()

    def _rename_coll(self, src: str, dst: str) -> None:
        prefix = src.rstrip("/") + "/"
        for p in [p for p in self.colls if p == src or p.startswith(prefix)]:
            coll = self.colls.pop(p)
            coll.name = dst + p[len(src):]
            self.colls[coll.name] = coll
        for p in [p for p in self.objs if p.startswith(prefix)]:
            obj = self.objs.pop(p)
            obj.coll = dst + obj.coll[len(src):]
            self.objs[obj.path] = obj
        self.mark()

    # ---- data objects ---------------------------------------------------------------------------
    def open_obj(self, user: str, path: str, flags: int, create_api: bool, force: bool,
                 token: str = "") -> tuple[DataObj, str]:
        """Open (or create) a data object; the replica token of the descriptor ("" when read-only)."""
        if not path.startswith("/"):  # iRODS 4.3: a relative logical path is SYS_INVALID_FILE_PATH
            raise IrodsError(SYS_INVALID_FILE_PATH, f"not an absolute logical path: {path!r}")
        path = normalize(path)
        with self.lock:
            if path in self.colls:
                raise IrodsError(CAT_NAME_EXISTS_AS_COLLECTION, f"{path} is a collection")
            coll = parent_of(path)
            if coll not in self.colls:
                raise IrodsError(CAT_UNKNOWN_COLLECTION, f"collection {coll} does not exist")
            obj = self.objs.get(path)
            writing = create_api or (flags & 3) in (1, 2)
            if obj is None:
                if not (create_api or flags & 64):
                    raise IrodsError(OBJ_PATH_DOES_NOT_EXIST, f"data object {path} does not exist")
                obj = self.register_obj(user, path)
                self.physical(obj).write_bytes(b"")
                return obj, self._lock_new(obj)
            held = self.locks.get(obj.id)
            if held is not None:
                if not token or token != held.token:
                    raise IrodsError(INTERMEDIATE_REPLICA_ACCESS,
                                     f"{path} is intermediate (opened for writing); a replica token is needed")
                self.require(user, path, WRITE if writing else READ)
                held.openers += 1  # a further stream of the same write session: no truncation
                return obj, held.token
            # rsDataObjCreate.cpp is rsDataObjOpen with O_CREAT | O_RDWR | O_TRUNC: an existing object is
            # truncated, force flag or not (put and copy are the APIs that want forceFlag)
            self.require(user, path, WRITE if writing else READ)
            if create_api or flags & 512:
                with open(self.physical(obj), "wb"):
                    pass
                obj.size, obj.checksum, obj.mtime = 0, "", now()
                self.mark()
            return obj, (self._lock_new(obj) if writing else "")

    def register_obj(self, user: str, path: str, phys: str = "") -> DataObj:
        """chlRegDataObj: write on the collection; access rows from it when it inherits."""
        with self.lock:
            coll = parent_of(path)
            if coll not in self.colls:
                raise IrodsError(CAT_UNKNOWN_COLLECTION, f"collection {coll} does not exist")
            if path in self.objs:
                raise IrodsError(CAT_NAME_EXISTS_AS_DATAOBJ, f"{path} exists")
            if path in self.colls:
                raise IrodsError(CAT_NAME_EXISTS_AS_COLLECTION, f"{path} is a collection")
            self.require(user, coll, WRITE)
            obj = DataObj(id=self.new_id(), coll=coll, name=path.rsplit("/", 1)[1], owner=user,
                          zone=self.zone, ctime=now(), mtime=now(), acl=self._new_acl(user, self.colls[coll]),
                          phys=phys)
            if phys:
                obj.size = Path(phys).stat().st_size
            self.objs[path] = obj
            self.mark()
            return obj

    def _lock_new(self, obj: DataObj) -> str:
        token = str(uuid.uuid4())
        self.locks[obj.id] = ReplicaLock(token)
        return token

    def is_intermediate(self, obj: DataObj) -> bool:
        return obj.id in self.locks

    def release(self, obj: DataObj, token: str, *, written: bool, finalize: bool, reg_chksum: bool,
                update_size: bool = False) -> bool:
        """One descriptor of ``obj`` closed; True when this finalized the replica."""
        with self.lock:
            held = self.locks.get(obj.id)
            if not token or held is None or held.token != token:
                return False  # a read-only descriptor of a good replica
            held.openers -= 1
            held.written |= written
            held.finalize |= finalize
            held.reg_chksum |= reg_chksum
            if update_size:
                obj.size = self.physical(obj).stat().st_size
                self.mark()
            if held.openers > 0 or not held.finalize:
                return False
            del self.locks[obj.id]
            self.closed(obj, held.written)
            return held.reg_chksum and held.written

    def unlink_obj(self, user: str, path: str, force: bool = True, unregister: bool = False) -> None:
        """rsDataObjUnlink.cpp: without ``forceFlag`` the object moves to ``/<zone>/trash/home/<user>/...``."""
        path = normalize(path)
        with self.lock:
            obj = self.objs.get(path)
            if obj is None:
                raise IrodsError(CAT_UNKNOWN_FILE if path.count("/") > 1 else USER_INPUT_PATH_ERR,
                                 f"data object {path} does not exist")
            self.require(user, path, DELETE_OBJECT)
            if obj.id in self.locks:
                raise IrodsError(INTERMEDIATE_REPLICA_ACCESS, f"{path} is intermediate (opened for writing)")
            if not (force or unregister or self.in_trash(path)):
                dst = self._trash_path(user, path, is_coll=False)
                del self.objs[path]
                obj.coll, obj.name = parent_of(dst), dst.rsplit("/", 1)[1]
                self.objs[dst] = obj
                self.mark()
                return
            del self.objs[path]
            if not unregister:
                self._drop_obj(obj)
            self.mark()

    def _drop_obj(self, obj: DataObj) -> None:
        # a registered file goes too (_rsDataObjUnlink removes the replica's file; iunreg is what keeps it)
        self.physical(obj).unlink(missing_ok=True)

    def checksum(self, user: str, path: str, force: bool) -> str:
        path = normalize(path)
        with self.lock:
            obj = self.objs.get(path)
            if obj is None:
                raise IrodsError(CAT_NO_ROWS_FOUND, f"data object {path} does not exist")
            self.require(user, path, READ)
            if obj.checksum and not force:
                return obj.checksum
        value = sha2_of_file(self.physical(obj))
        with self.lock:
            obj.checksum = value
            self.mark()
        return value

    def closed(self, obj: DataObj, written: bool) -> None:
        with self.lock:
            obj.size = self.physical(obj).stat().st_size
            if written:
                obj.checksum, obj.mtime = "", now()
            self.mark()

    # ---- access control (chlModAccessControl) -----------------------------------------------------------
    def mod_access(self, user: str, level: str, who: str, zone: str, path: str, recursive: bool) -> None:
        admin = level.startswith("admin:")
        if admin:
            level = level[len("admin:"):]
            if not self.is_admin(user):
                raise IrodsError(CAT_NO_ACCESS_PERMISSION, "You must be the admin to use the -M admin mode")
        path = normalize(path)
        with self.lock:
            item = self.entity(path)
            if level in ("inherit", "noinherit"):
                if not isinstance(item, Coll) or not admin and self.access(user, path) < OWN:
                    raise IrodsError(CAT_NO_ACCESS_PERMISSION, "either the collection does not exist or you "
                                                               "do not have sufficient access")
                targets = [c for p, c in self.colls.items()
                           if p == path or recursive and p.startswith(path.rstrip("/") + "/")]
                for c in targets:
                    c.inherit = level == "inherit"
                    c.mtime = now()
                self.mark()
                return
            if level not in LEVELS:
                raise IrodsError(CAT_INVALID_ARGUMENT, f"access level '{level}' is invalid")
            if item is None:
                raise IrodsError(CAT_INVALID_ARGUMENT, f"Input path is not a collection and not a dataObj: {path}")
            if not admin and self.access(user, path) < OWN:
                raise IrodsError(CAT_NO_ACCESS_PERMISSION,
                                 f"User [{user}] has insufficient permission to modify: [{path}]")
            if who not in self.users or (zone and zone != self.zone):
                raise IrodsError(CAT_INVALID_USER, "invalid user")
            if recursive and isinstance(item, DataObj):
                raise IrodsError(CAT_INVALID_ARGUMENT,
                                 f"Input path is not a collection and recursion was requested: {path}")
            items = [item]
            if recursive:
                prefix = path.rstrip("/") + "/"
                items += [c for p, c in self.colls.items() if p.startswith(prefix)]
                items += [o for p, o in self.objs.items() if p.startswith(prefix)]
            for it in items:
                if LEVELS[level] == ACCESS_TYPES["null"]:
                    it.acl.pop(who, None)
                else:
                    it.acl[who] = LEVELS[level]
            self.mark()

    # ---- metadata (chlAddAVUMetadata and friends) -------------------------------------------------------
    def meta_target(self, user: str, kind: str, name: str, level: int, admin: bool = False) -> list[dict]:
        """The AVU list of a data object (-d), collection (-C), resource (-R) or user (-u)."""
        kind = kind.lstrip("-").lower()
        if kind == "d":
            obj = self.objs.get(normalize(name))
            if obj is None:
                raise IrodsError(CAT_UNKNOWN_FILE, f"data object {name} does not exist")
            if not admin:
                self.require(user, obj.path, level)
            return obj.meta
        if kind == "c":
            coll = self.colls.get(normalize(name))
            if coll is None:
                raise IrodsError(CAT_UNKNOWN_COLLECTION, f"collection {name} does not exist")
            if not admin:
                self.require(user, coll.name, level)
            return coll.meta
        if kind == "r":
            if name != "demoResc":
                raise IrodsError(CAT_INVALID_RESOURCE, f"resource {name} does not exist")
            if level > READ_METADATA and not self.is_admin(user):
                raise IrodsError(CAT_INSUFFICIENT_PRIVILEGE_LEVEL, "only an admin may change resource metadata")
            return self.resc_meta
        if kind == "u":
            if level > READ_METADATA and not self.is_admin(user):
                raise IrodsError(CAT_INSUFFICIENT_PRIVILEGE_LEVEL, "only an admin may change user metadata")
            info = self.users.get(name.split("#")[0])
            if info is None:
                raise IrodsError(CAT_INVALID_USER, f"user {name} does not exist")
            return info.setdefault("meta", [])
        raise IrodsError(CAT_INVALID_ARGUMENT, f"unknown item type {kind!r}")

    def avu_id(self, a: str, v: str, u: str) -> int:
        """R_META_MAIN: one id per distinct (attribute, value, units) triple."""
        if self.avu_ids is None:
            self.avu_ids = {(m["a"], m["v"], m["u"]): m["id"] for meta in self._all_meta() for m in meta}
        key = (a, v, u)
        if key not in self.avu_ids:
            self.next_avu += 1
            self.avu_ids[key] = self.next_avu
        return self.avu_ids[key]

    def _all_meta(self):
        for c in self.colls.values():
            yield c.meta
        for o in self.objs.values():
            yield o.meta
        for info in self.users.values():
            yield info.get("meta", [])
        yield self.resc_meta

    def mod_avu(self, user: str, op: str, kind: str, name: str, args: list[str], admin: bool = False) -> None:
        if admin and not self.is_admin(user):
            raise IrodsError(CAT_INSUFFICIENT_PRIVILEGE_LEVEL, "admin mode needs a rodsadmin")
        with self.lock:
            if op in ("add", "adda", "set", "rm", "rmw", "mod", "rmi"):
                level = {"rm": DELETE_METADATA, "rmw": DELETE_METADATA, "rmi": DELETE_METADATA}.get(op, CREATE_METADATA)
                meta = self.meta_target(user, kind, name, level, admin)
                a, v, u = (args + ["", "", ""])[:3]
                if op in ("add", "adda", "set", "mod") and (not a or not v):
                    raise IrodsError(CAT_INVALID_ARGUMENT, "attribute and value must not be empty")
                if op in ("add", "adda"):
                    if any((m["a"], m["v"], m["u"]) == (a, v, u) for m in meta):
                        raise IrodsError(CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME, "the AVU exists")
                    meta.append(self._avu(a, v, u))
                elif op == "set":  # db_set_avu_metadata_op: one AVU of that name is modified in place
                    same = [m for m in meta if m["a"] == a]
                    fresh = self._avu(a, v, u)
                    if len(same) == 1:
                        fresh["ctime"] = same[0]["ctime"]
                    meta[:] = [m for m in meta if m["a"] != a] + [fresh]
                elif op == "rm":
                    hit = [m for m in meta if (m["a"], m["v"], m["u"]) == (a, v, u)]
                    if not hit:
                        raise IrodsError(CAT_SUCCESS_BUT_WITH_NO_INFO, "no such AVU")
                    meta[:] = [m for m in meta if m not in hit]
                elif op == "rmi":
                    meta[:] = [m for m in meta if str(m["id"]) != a]
                elif op == "rmw":
                    pa, pv, pu = (like_re(a), like_re(v), like_re(u) if u else None)
                    meta[:] = [m for m in meta if not (pa.match(m["a"]) and pv.match(m["v"])
                                                       and (pu is None or pu.match(m["u"])))]
                elif op == "mod":
                    old_u = u if u[:2] not in ("n:", "v:", "u:") else ""
                    changes = [x for x in args[2:] if x[:2] in ("n:", "v:", "u:")]
                    hit = [m for m in meta if (m["a"], m["v"], m["u"]) == (a, v, old_u)]
                    if not hit:
                        raise IrodsError(CAT_UNKNOWN_FILE, "no such AVU to modify")
                    m = hit[0]
                    na, nv, nu = m["a"], m["v"], m["u"]
                    for ch in changes:
                        if ch.startswith("n:"):
                            na = ch[2:]
                        elif ch.startswith("v:"):
                            nv = ch[2:]
                        else:
                            nu = ch[2:]
                    meta.remove(m)
                    fresh = self._avu(na, nv, nu)
                    fresh["ctime"] = m["ctime"]
                    meta.append(fresh)
                self.mark()
                return
            if op == "cp":
                src = self.meta_target(user, kind, args[0], READ_METADATA, admin)
                dst = self.meta_target(user, args[1], args[2], CREATE_METADATA, admin)  # kind2, name2
                for m in list(src):
                    if not any((x["a"], x["v"], x["u"]) == (m["a"], m["v"], m["u"]) for x in dst):
                        dst.append(self._avu(m["a"], m["v"], m["u"]))
                self.mark()
                return
        raise IrodsError(CAT_INVALID_ARGUMENT, f"unknown metadata operation {op!r}")

    def _avu(self, a: str, v: str, u: str) -> dict:
        return {"id": self.avu_id(a, v, u), "a": a, "v": v, "u": u or "", "ctime": now(), "mtime": now()}

    # ---- users and groups (chlRegUserRE, chlModUser, chlModGroup, chlDelUserRE) --------------------------
    def admin_op(self, user: str, args: list[str]) -> None:
        if not self.is_admin(user):
            raise IrodsError(CAT_INSUFFICIENT_PRIVILEGE_LEVEL, "a rodsadmin is needed")
        op, what, *rest = args + ["", ""]
        rest += [""] * 8
        with self.lock:
            if op == "add" and what == "user":
                name, utype = rest[0].split("#")[0], rest[1] or "rodsuser"
                if utype not in ("rodsuser", "rodsadmin", "groupadmin", "rodsgroup"):
                    raise IrodsError(CAT_INVALID_USER_TYPE, f"invalid user type {utype}")
                if name in self.users:
                    raise IrodsError(CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME, f"user {name} exists")
                self._ensure_user(name, utype, None)
                if utype != "rodsgroup":
                    self._ensure_coll(f"/{self.zone}/home/{name}", name)
                    self._ensure_coll(f"/{self.zone}/trash/home/{name}", name)
                return
            if op == "add" and what == "group":
                name = rest[0]
                if name in self.users:
                    raise IrodsError(CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME, f"group {name} exists")
                self._ensure_user(name, "rodsgroup", None)
                return
            if op == "rm" and what in ("user", "group"):
                name = rest[0].split("#")[0]
                info = self.users.get(name)
                if info is None or (what == "group") != (info["type"] == "rodsgroup"):
                    raise IrodsError(CAT_INVALID_USER, f"{what} {name} does not exist")
                home = f"/{self.zone}/home/{name}"
                if what == "user" and any(p.startswith(home + "/") for p in [*self.colls, *self.objs]):
                    raise IrodsError(CAT_COLLECTION_NOT_EMPTY, f"the home collection of {name} is not empty")
                for p in (home, f"/{self.zone}/trash/home/{name}"):
                    if what == "user" and not any(x.startswith(p + "/") for x in [*self.colls, *self.objs]):
                        self.colls.pop(p, None)
                del self.users[name]
                for g in self.users.values():
                    if name in g.get("members", []):
                        g["members"].remove(name)
                for it in [*self.colls.values(), *self.objs.values()]:
                    it.acl.pop(name, None)
                self.mark()
                return
            if op == "modify" and what == "user":
                name, field_, value = rest[0].split("#")[0], rest[1], rest[2]
                info = self.users.get(name)
                if info is None:
                    raise IrodsError(CAT_INVALID_USER, f"user {name} does not exist")
                if field_ == "password":
                    info["password"] = value
                elif field_ == "type":
                    info["type"] = value
                elif field_ == "info":
                    info["info"] = value
                elif field_ == "comment":
                    info["comment"] = value
                else:
                    raise IrodsError(CAT_INVALID_ARGUMENT, f"cannot modify {field_}")
                info["mtime"] = now()
                self.mark()
                return
            if op == "modify" and what == "group":
                group, verb, member = rest[0], rest[1], rest[2].split("#")[0]
                info = self.users.get(group)
                if info is None or info["type"] != "rodsgroup":
                    raise IrodsError(CAT_INVALID_GROUP, f"group {group} does not exist")
                if member not in self.users:
                    raise IrodsError(CAT_INVALID_USER, f"user {member} does not exist")
                if verb == "add":
                    if member in info["members"]:
                        raise IrodsError(CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME, f"{member} is in {group}")
                    info["members"].append(member)
                elif verb == "remove":
                    if member not in info["members"]:
                        raise IrodsError(CAT_USER_NOT_IN_GROUP, f"{member} is not in {group}")
                    info["members"].remove(member)
                else:
                    raise IrodsError(CAT_INVALID_ARGUMENT, f"unknown group operation {verb}")
                self.mark()
                return
            if op == "rm" and what == "unusedAVUs":
                return  # each item keeps its own AVU rows here: none is ever left unused
        raise IrodsError(SYS_NOT_SUPPORTED, f"admin operation {op} {what} is not supported by the stand-in")


CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME = -809000


def like_re(pattern: str):
    import re
    return re.compile("^" + "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch)
                                     for ch in pattern) + "$", re.S)
