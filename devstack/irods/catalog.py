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

READ, WRITE, OWN = 1050, 1120, 1200
LEVELS = {"read": READ, "read_object": READ, "write": WRITE, "modify_object": WRITE, "own": OWN}


class IrodsError(Exception):
    """An iRODS error code with a message, sent back as the API reply status."""

    def __init__(self, code: int, msg: str):
        super().__init__(msg)
        self.code = code
        self.msg = msg


CAT_NO_ROWS_FOUND = -808000
CAT_UNKNOWN_COLLECTION = -814000
CAT_NO_ACCESS_PERMISSION = -818000
CAT_COLLECTION_NOT_EMPTY = -821000
CAT_INVALID_AUTHENTICATION = -826000
CAT_NAME_EXISTS_AS_COLLECTION = -833000
CAT_NAME_EXISTS_AS_DATAOBJ = -834000
OVERWRITE_WITHOUT_FORCE_FLAG = -312000
OBJ_PATH_DOES_NOT_EXIST = -358000
USER_INPUT_PATH_ERR = -317000
SYS_UNMATCHED_API_NUM = -12000
SYS_FILE_DESC_OUT_OF_RANGE = -19000
SYS_INVALID_INPUT_PARAM = -130000
INTERMEDIATE_REPLICA_ACCESS = -405000


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
    def __init__(self, state: Path, zone: str, users: dict, acls: dict[str, dict[str, str]]):
        self.state = state
        self.zone = zone
        self.users = users  # name -> {"password": ..., "type": "rodsuser"|"rodsadmin"}
        self.vault = state / "vault"
        self.vault.mkdir(parents=True, exist_ok=True)
        self.file = state / "catalog.json"
        self.lock = threading.RLock()
        self.colls: dict[str, Coll] = {}
        self.objs: dict[str, DataObj] = {}
        self.next_id = 10000
        self.dirty = False
        self.locks: dict[int, ReplicaLock] = {}  # data id -> the write session of an intermediate replica
        self._load()
        for path in ("/", f"/{zone}", f"/{zone}/home", f"/{zone}/trash"):
            self._ensure_coll(path, "rods")
        for name in users:
            home = self._ensure_coll(f"/{zone}/home/{name}", name)
            home.acl.setdefault(name, OWN)
        for path, grants in acls.items():
            coll = self._ensure_coll(normalize(path), "rods")
            for user, level in grants.items():
                coll.acl[user] = LEVELS[level]
        self.save()

    # ---- persistence -------------------------------------------------------------------------
    def _load(self) -> None:
        if not self.file.exists():
            return
        doc = json.loads(self.file.read_text())
        self.next_id = doc["next_id"]
        self.colls = {c["name"]: Coll(**c) for c in doc["colls"]}
        self.objs = {}
        for o in doc["objs"]:
            obj = DataObj(**o)
            self.objs[obj.path] = obj

    def save(self) -> None:
        with self.lock:
            doc = {"next_id": self.next_id, "colls": [asdict(c) for c in self.colls.values()],
                   "objs": [asdict(o) for o in self.objs.values()]}
            self.dirty = False
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.file)

    def mark(self) -> None:
        self.dirty = True

    # ---- helpers --------------------------------------------------------------------------------
    def new_id(self) -> int:
        with self.lock:
            self.next_id += 1
            return self.next_id

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

    def access(self, user: str, path: str) -> int:
        """The user's access level on ``path``: the highest grant on it or on any ancestor."""
        if self.is_admin(user):
            return OWN
        level = 0
        obj = self.objs.get(path)
        if obj is not None:
            level = obj.acl.get(user, 0)
            path = obj.coll
        while True:
            coll = self.colls.get(path)
            if coll is not None:
                level = max(level, coll.acl.get(user, 0))
            if path == "/":
                return level
            path = parent_of(path)

    def require(self, user: str, path: str, level: int) -> None:
        if self.access(user, path) < level:
            raise IrodsError(CAT_NO_ACCESS_PERMISSION, f"user {user} has no access to {path}")

    def physical(self, obj: DataObj) -> Path:
        return self.vault / str(obj.id)

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
            existing = parent
            while existing not in self.colls:
                existing = parent_of(existing)
                if existing in self.objs:
                    raise IrodsError(CAT_NAME_EXISTS_AS_DATAOBJ, f"{existing} is a data object")
            self.require(user, existing, WRITE)
            self._ensure_coll(path, user)

    def remove_coll(self, user: str, path: str, recursive: bool) -> None:
        path = normalize(path)
        with self.lock:
            if path not in self.colls:
                raise IrodsError(CAT_UNKNOWN_COLLECTION, f"collection {path} does not exist")
            self.require(user, path, WRITE)
            prefix = path.rstrip("/") + "/"
            inner_objs = [p for p in self.objs if p.startswith(prefix)]
            inner_colls = [p for p in self.colls if p.startswith(prefix)]
            if (inner_objs or inner_colls) and not recursive:
                raise IrodsError(CAT_COLLECTION_NOT_EMPTY, f"collection {path} is not empty")
            for p in inner_objs:
                self.physical(self.objs.pop(p)).unlink(missing_ok=True)
            for p in inner_colls:
                del self.colls[p]
            del self.colls[path]
            self.mark()

    # ---- data objects ---------------------------------------------------------------------------
    def open_obj(self, user: str, path: str, flags: int, create_api: bool, force: bool,
                 token: str = "") -> tuple[DataObj, str]:
        """Open (or create) a data object; the replica token of the descriptor ("" when read-only)."""
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
                self.require(user, coll, WRITE)
                obj = DataObj(id=self.new_id(), coll=coll, name=path.rsplit("/", 1)[1], owner=user,
                              zone=self.zone, ctime=now(), mtime=now(), acl={user: OWN})
                self.physical(obj).write_bytes(b"")
                self.objs[path] = obj
                self.mark()
                return obj, self._lock_new(obj)
            held = self.locks.get(obj.id)
            if held is not None:
                if not token or token != held.token:
                    raise IrodsError(INTERMEDIATE_REPLICA_ACCESS,
                                     f"{path} is intermediate (opened for writing); a replica token is needed")
                self.require(user, path, WRITE if writing else READ)
                held.openers += 1  # a further stream of the same write session: no truncation
                return obj, held.token
            if create_api and not force:
                raise IrodsError(OVERWRITE_WITHOUT_FORCE_FLAG, f"{path} exists; overwrite needs forceFlag")
            self.require(user, path, WRITE if writing else READ)
            if create_api or flags & 512:
                with open(self.physical(obj), "wb"):
                    pass
                obj.size, obj.checksum, obj.mtime = 0, "", now()
                self.mark()
            return obj, (self._lock_new(obj) if writing else "")

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

    def unlink_obj(self, user: str, path: str) -> None:
        path = normalize(path)
        with self.lock:
            obj = self.objs.get(path)
            if obj is None:
                raise IrodsError(CAT_NO_ROWS_FOUND, f"data object {path} does not exist")
            self.require(user, path, WRITE)
            if obj.id in self.locks:
                raise IrodsError(INTERMEDIATE_REPLICA_ACCESS, f"{path} is intermediate (opened for writing)")
            del self.objs[path]
            self.physical(obj).unlink(missing_ok=True)
            self.mark()

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
