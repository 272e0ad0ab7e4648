"""The iRODS protocol: framing, XML packing instructions, the API handlers of one connection.

Parallel transfer as python-irodsclient does it (``irods/parallel.py``, iRODS 4.2.9+ "multi-1247",
no separate data port): the first stream opens the object (``DATA_OBJ_OPEN``), asks for its
replica token with ``GET_FILE_DESCRIPTOR_INFO``, the other streams open the same replica with
``replicaToken`` and ``resc_hier`` from other connections, seek to their offsets and read or write,
close with ``REPLICA_CLOSE`` (no finalization), and the first stream's ``DATA_OBJ_CLOSE`` finalizes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import socket
import socketserver
import struct
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

from devstack.irods import catalog as c
from devstack.irods.catalog import Catalog, IrodsError
from devstack.irods.genquery import run_query
from devstack.irods.obf import decode_new_password

log = logging.getLogger("devstack.irods")

REL_VERSION = "rods4.3.4"
API_VERSION = "d"
MAX_PASSWORD_LENGTH = 50
MAX_ROWS_LIMIT = 500

# API numbers (lib/api/include/apiNumber.h)
DATA_OBJ_CREATE, DATA_OBJ_OPEN, DATA_OBJ_UNLINK = 601, 602, 615
DATA_OBJ_CHKSUM, DATA_OBJ_CLOSE, DATA_OBJ_LSEEK, DATA_OBJ_READ, DATA_OBJ_WRITE = 629, 673, 674, 675, 676
RM_COLL, COLL_CREATE, GEN_QUERY, AUTH_REQUEST, AUTHENTICATION = 679, 681, 702, 703, 110000
REPLICA_CLOSE, GET_FILE_DESCRIPTOR_INFO = 20004, 20000
DATA_OBJ_RENAME, PHY_PATH_REG, GENERAL_ADMIN, MOD_AVU_METADATA, MOD_ACCESS_CONTROL = 627, 630, 701, 706, 707
ATOMIC_APPLY_METADATA_OPERATIONS, TOUCH, DATA_OBJ_COPY, MOD_DATA_OBJ_META, OBJ_STAT = 20002, 20007, 696, 622, 633
USER_ADMIN, DATA_OBJ_TRUNCATE = 714, 652
RENAME_DATA_OBJ, RENAME_COLL, UNREG_OPR = 11, 12, 26  # lib/api/include/irods/dataObjInpOut.h


class Disconnect(Exception):
    pass


# ---- framing ----------------------------------------------------------------------------------------
def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise Disconnect("peer closed")
        buf += chunk
    return bytes(buf)


def recv_message(sock: socket.socket) -> tuple[str, bytes, bytes, bytes, int]:
    (hlen,) = struct.unpack(">i", recv_exact(sock, 4))
    header = ET.fromstring(recv_exact(sock, hlen))
    msg_len, err_len, bs_len = (int(header.findtext(k)) for k in ("msgLen", "errorLen", "bsLen"))
    msg = recv_exact(sock, msg_len) if msg_len else b""
    err = recv_exact(sock, err_len) if err_len else b""
    bs = recv_exact(sock, bs_len) if bs_len else b""
    return header.findtext("type"), msg, err, bs, int(header.findtext("intInfo"))


def pack(msg_type: str, msg: bytes = b"", err: bytes = b"", bs: bytes = b"", int_info: int = 0) -> bytes:
    header = (f"<MsgHeader_PI><type>{msg_type}</type><msgLen>{len(msg)}</msgLen><errorLen>{len(err)}"
              f"</errorLen><bsLen>{len(bs)}</bsLen><intInfo>{int_info}</intInfo></MsgHeader_PI>").encode()
    return struct.pack(">i", len(header)) + header + msg + err + bs


def xml(name: str, *fields: tuple[str, object]) -> bytes:
    parts = [f"<{name}>"]
    for key, value in fields:
        if isinstance(value, bytes):  # already packed sub-structure
            parts.append(value.decode())
        else:
            parts.append(f"<{key}>{escape(str(value))}</{key}>")
    parts.append(f"</{name}>")
    return "".join(parts).encode("utf-8", "surrogateescape")


_TOKEN = re.compile(rb"<(/?)([A-Za-z_][\w.-]*)\s*(/?)>|([^<]+)")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|apos|#x[0-9a-fA-F]+|#[0-9]+);")


def _unescape(text: str) -> str:
    def sub(m):
        name = m.group(1)
        if name.startswith("#x"):
            return chr(int(name[2:], 16))
        if name.startswith("#"):
            return chr(int(name[1:]))
        return {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}[name]
    return _ENTITY.sub(sub, text)


def parse_packed(data: bytes) -> ET.Element:
    """The iRODS packing instruction XML as the server's own parser reads it (lib/core/src/packStruct.cpp
    is not an XML parser: control characters such as \\x01 in a value are taken as they are, where a
    strict XML parser refuses them)."""
    stack: list[ET.Element] = []
    root = None
    for m in _TOKEN.finditer(data.replace(b"\0", b"")):
        close, tag, empty, text = m.groups()
        if text is not None:
            if stack:
                stack[-1].text = (stack[-1].text or "") + _unescape(text.decode("utf-8", "surrogateescape"))
            continue
        tag = tag.decode()
        if close:
            if not stack or stack[-1].tag != tag:
                raise ValueError(f"mismatched closing tag {tag}")
            done = stack.pop()
            if not stack:
                root = done
            continue
        elem = ET.SubElement(stack[-1], tag) if stack else ET.Element(tag)
        if empty:
            if not stack:
                root = elem
            continue
        stack.append(elem)
    if root is None or stack:
        raise ValueError("truncated packing instruction")
    for elem in root.iter():  # whitespace-only text between tags is not content
        if elem.text is not None and len(elem) and not elem.text.strip():
            elem.text = None
    return root


def kv_pairs(root: ET.Element | None) -> dict[str, str]:
    if root is None:
        return {}
    keys = [e.text or "" for e in root.findall("keyWord")]
    vals = [e.text or "" for e in root.findall("svalue")]
    return dict(zip(keys, vals, strict=False))


def bin_json(doc: dict) -> bytes:
    raw = json.dumps(doc).encode()
    return xml("BinBytesBuf_PI", ("buflen", len(raw)), ("buf", base64.b64encode(raw).decode()))


def parse_json_request(msg: bytes) -> dict:
    root = ET.fromstring(msg.replace(b"\0", b""))
    buf = root.findtext("buf") or ""
    data = base64.b64decode(buf) if root.tag == "BinBytesBuf_PI" else buf.encode()
    return json.loads(data.replace(b"\0", b"").decode())


# ---- one connection ---------------------------------------------------------------------------------
class Handler(socketserver.BaseRequestHandler):
    catalog: Catalog  # set on the subclass by make_server

    def setup(self):
        self.user: str | None = None
        self.proxy_user = ""
        self.challenge = ""
        self.signature = ""
        self.fds: dict[int, dict] = {}
        self.next_fd = 3
        self.queries: dict[int, list[list[str]]] = {}
        self.query_meta: dict[int, tuple[list[int], int]] = {}
        self.next_query = 1

    def send(self, data: bytes) -> None:
        self.request.sendall(data)

    def reply(self, int_info: int = 0, msg: bytes = b"", bs: bytes = b"") -> None:
        self.send(pack("RODS_API_REPLY", msg=msg, bs=bs, int_info=int_info))

    def error(self, code: int, text: str, msg: bytes = b"") -> None:
        err = xml("RError_PI", ("count", 1), ("", xml("RErrMsg_PI", ("status", code), ("msg", text))))
        self.send(pack("RODS_API_REPLY", msg=msg, err=err, int_info=code))

    def handle(self):
        try:
            self.startup()
            while True:
                msg_type, msg, _err, bs, int_info = recv_message(self.request)
                if msg_type == "RODS_DISCONNECT":
                    return
                if msg_type != "RODS_API_REQ":
                    self.error(c.SYS_UNMATCHED_API_NUM, f"unexpected message type {msg_type}")
                    continue
                try:
                    self.dispatch(int_info, msg, bs)
                except IrodsError as exc:
                    self.error(exc.code, exc.msg)
                except (ValueError, KeyError, ET.ParseError) as exc:
                    log.warning("bad request for API %s: %r %r", int_info, exc, msg[:300])
                    self.error(c.SYS_INVALID_INPUT_PARAM, f"bad input: {exc}")
        except (Disconnect, ConnectionError, OSError):
            pass
        finally:
            for fd in list(self.fds.values()):
                self.finish_fd(fd)
            self.fds.clear()

    def startup(self):
        msg_type, msg, _e, _b, _i = recv_message(self.request)
        if msg_type != "RODS_CONNECT":
            raise Disconnect("expected RODS_CONNECT")
        root = ET.fromstring(msg)
        self.proxy_user = root.findtext("proxyUser") or ""
        option = root.findtext("option") or ""
        if option.endswith("request_server_negotiation"):
            self.send(pack("RODS_CS_NEG_T", msg=xml("CS_NEG_PI", ("status", 1), ("result", "CS_NEG_REFUSE"))))
            _t, neg, _e, _b, _i = recv_message(self.request)
            result = ET.fromstring(neg).findtext("result") or ""
            if "CS_NEG_USE_TCP" not in result:
                raise Disconnect("only TCP is supported")
        version = xml("Version_PI", ("status", 0), ("relVersion", REL_VERSION), ("apiVersion", API_VERSION),
                      ("reconnPort", 0), ("reconnAddr", ""), ("cookie", 400))
        self.send(pack("RODS_VERSION", msg=version))

    # ---- dispatch ----------------------------------------------------------------------------------
    def dispatch(self, api: int, msg: bytes, bs: bytes) -> None:
        if api == AUTHENTICATION:
            return self.authenticate(parse_json_request(msg))
        if self.user is None:
            raise IrodsError(c.CAT_INVALID_AUTHENTICATION, "not authenticated")
        root = parse_packed(msg) if msg else None
        handlers = {
            GEN_QUERY: self.gen_query, COLL_CREATE: self.coll_create, RM_COLL: self.rm_coll,
            DATA_OBJ_OPEN: self.obj_open, DATA_OBJ_CREATE: self.obj_create, DATA_OBJ_READ: self.obj_read,
            DATA_OBJ_WRITE: self.obj_write, DATA_OBJ_LSEEK: self.obj_seek, DATA_OBJ_CLOSE: self.obj_close,
            REPLICA_CLOSE: self.replica_close, GET_FILE_DESCRIPTOR_INFO: self.fd_info,
            DATA_OBJ_CHKSUM: self.obj_chksum,
            DATA_OBJ_UNLINK: self.obj_unlink, DATA_OBJ_RENAME: self.obj_rename, PHY_PATH_REG: self.phy_path_reg,
            GENERAL_ADMIN: self.general_admin, MOD_AVU_METADATA: self.mod_avu, MOD_ACCESS_CONTROL: self.mod_acl,
            ATOMIC_APPLY_METADATA_OPERATIONS: self.atomic_meta, TOUCH: self.touch, DATA_OBJ_COPY: self.obj_copy,
            MOD_DATA_OBJ_META: self.mod_obj_meta, USER_ADMIN: self.user_admin, DATA_OBJ_TRUNCATE: self.obj_truncate,
        }
        handler = handlers.get(api)
        if handler is None:
            raise IrodsError(c.SYS_UNMATCHED_API_NUM, f"API {api} is not supported by the stand-in")
        if api in (REPLICA_CLOSE, GET_FILE_DESCRIPTOR_INFO, ATOMIC_APPLY_METADATA_OPERATIONS, TOUCH):  # JSON
            return handler(parse_json_request(msg), bs)
        return handler(root, bs)

    def authenticate(self, req: dict) -> None:
        op = req.get("next_operation")
        if req.get("scheme", "native") != "native":
            raise IrodsError(c.CAT_INVALID_AUTHENTICATION, "only native authentication is supported")
        if op == "auth_agent_auth_request":
            self.challenge = base64.b64encode(os.urandom(48)).decode()
            self.signature = self.challenge.encode()[:16].hex()  # the session signature (obf.cpp)
            self.reply(msg=bin_json({**req, "request_result": self.challenge}))
            return
        if op == "auth_agent_auth_response":
            name = req.get("user_name", "")
            user = self.catalog.users.get(name)
            if not self.challenge or user is None or name != self.proxy_user:
                raise IrodsError(c.CAT_INVALID_AUTHENTICATION, "authentication failed")
            padded = struct.pack(f"{MAX_PASSWORD_LENGTH}s", user["password"].encode().strip())
            expect = hashlib.md5(self.challenge.encode() + padded).digest().replace(b"\0", b"\1")  # noqa: S324
            self.challenge = ""
            try:
                given = base64.b64decode(req.get("digest", ""))
            except ValueError:
                given = b""
            if given != expect:
                raise IrodsError(c.CAT_INVALID_AUTHENTICATION, "authentication failed")
            self.user = name
            self.reply(msg=bin_json({}))
            return
        raise IrodsError(c.CAT_INVALID_AUTHENTICATION, f"unknown auth operation {op!r}")

    # ---- queries ---------------------------------------------------------------------------------------
    def gen_query(self, root: ET.Element, _bs: bytes) -> None:
        max_rows = int(root.findtext("maxRows"))
        cont = int(root.findtext("continueInx"))
        options = int(root.findtext("options") or 0)
        offset = int(root.findtext("partialStartIndex") or 0)
        if cont:
            rows = self.queries.pop(cont, None)
            selects, _ = self.query_meta.pop(cont, ([], 0))
            if rows is None or max_rows <= 0:
                raise IrodsError(c.CAT_NO_ROWS_FOUND, "no more rows")
        else:
            sel = root.find("InxIvalPair_PI")
            selects = [int(e.text) for e in sel.findall("inx")]
            ivals = [int(e.text) for e in sel.findall("ivalue")] + [1] * len(selects)
            cond = root.find("InxValPair_PI")
            conds = list(zip((int(e.text) for e in cond.findall("inx")),
                             (e.text or "" for e in cond.findall("svalue")), strict=False))
            rows = run_query(self.catalog, self.user, selects, conds, upper=bool(options & 0x200),
                             distinct=not options & 0x40)
            rows = order_and_aggregate(rows, ivals[:len(selects)])
            rows = rows[offset:]
            if max_rows <= 0:
                raise IrodsError(c.CAT_NO_ROWS_FOUND, "no rows requested")
        max_rows = min(max_rows, MAX_ROWS_LIMIT)
        page, rest = rows[:max_rows], rows[max_rows:]
        if not page:
            raise IrodsError(c.CAT_NO_ROWS_FOUND, "no rows found")
        cont_out = 0
        if rest:
            cont_out = self.next_query
            self.next_query += 1
            self.queries[cont_out] = rest
            self.query_meta[cont_out] = (selects, 0)
        results = b"".join(
            xml("SqlResult_PI", ("attriInx", col), ("reslen", 1024),
                *(("value", row[i]) for row in page))
            for i, col in enumerate(selects))
        self.reply(msg=xml("GenQueryOut_PI", ("rowCnt", len(page)), ("attriCnt", len(selects)),
                           ("continueInx", cont_out), ("totalRowCount", len(rows)), ("", results)))

    # ---- collections -------------------------------------------------------------------------------------
    def coll_create(self, root: ET.Element, _bs: bytes) -> None:
        opts = kv_pairs(root.find("KeyValPair_PI"))
        self.catalog.create_coll(self.user, root.findtext("collName"), "recursiveOpr" in opts)
        self.reply()

    def rm_coll(self, root: ET.Element, _bs: bytes) -> None:
        opts = kv_pairs(root.find("KeyValPair_PI"))
        self.catalog.remove_coll(self.user, root.findtext("collName"), "recursiveOpr" in opts,
                                 force="forceFlag" in opts)
        self.reply()

    # ---- data objects ------------------------------------------------------------------------------------
    def _open(self, root: ET.Element, create_api: bool) -> None:
        opts = kv_pairs(root.find("KeyValPair_PI"))
        flags = int(root.findtext("openFlags") or 0)
        obj, token = self.catalog.open_obj(self.user, root.findtext("objPath"), flags, create_api,
                                           force="forceFlag" in opts, token=opts.get("replicaToken", ""))
        writing = create_api or (flags & 3) != 0
        fh = open(self.catalog.physical(obj), "r+b" if writing else "rb")  # noqa: SIM115
        fd = self.next_fd
        self.next_fd += 1
        self.fds[fd] = {"obj": obj, "fh": fh, "written": False, "writing": writing, "token": token,
                        "flags": flags, "reg_chksum": "regChksum" in opts or "verifyChksum" in opts}
        self.reply(int_info=fd)

    def obj_open(self, root, _bs):
        self._open(root, create_api=False)

    def obj_create(self, root, _bs):
        self._open(root, create_api=True)

    def _fd(self, root: ET.Element) -> dict:
        fd = self.fds.get(int(root.findtext("l1descInx")))
        if fd is None:
            raise IrodsError(c.SYS_FILE_DESC_OUT_OF_RANGE, "bad descriptor")
        return fd

    def obj_read(self, root, _bs):
        fd = self._fd(root)
        data = fd["fh"].read(int(root.findtext("len")))
        self.reply(int_info=len(data), bs=data)

    def obj_write(self, root, bs):
        fd = self._fd(root)
        if not fd["writing"]:
            raise IrodsError(c.CAT_NO_ACCESS_PERMISSION, "descriptor is not open for writing")
        fd["fh"].write(bs)
        fd["written"] = True
        self.reply(int_info=len(bs))

    def obj_seek(self, root, _bs):
        fd = self._fd(root)
        pos = fd["fh"].seek(int(root.findtext("offset")), int(root.findtext("whence")))
        self.reply(msg=xml("fileLseekOut_PI", ("offset", pos)))

    def finish_fd(self, fd: dict, *, finalize: bool = True, update_size: bool = False) -> None:
        fd["fh"].close()
        if fd["token"]:
            if self.catalog.release(fd["obj"], fd["token"], written=fd["written"], finalize=finalize,
                                    reg_chksum=fd["reg_chksum"], update_size=update_size):
                self.catalog.checksum(self.user, fd["obj"].path, force=True)
        elif finalize:
            self.catalog.closed(fd["obj"], fd["written"])

    def _take_fd(self, index: int) -> dict:
        fd = self.fds.pop(index, None)
        if fd is None:
            raise IrodsError(c.SYS_FILE_DESC_OUT_OF_RANGE, "bad descriptor")
        return fd

    def obj_close(self, root, _bs):
        self.finish_fd(self._take_fd(int(root.findtext("l1descInx"))))
        self.reply()

    def replica_close(self, req: dict, _bs):
        """Close one stream; finalize only when ``update_status`` asks for it (as the last opener)."""
        fd = self._take_fd(int(req["fd"]))
        self.finish_fd(fd, finalize=bool(req.get("update_status", True)),
                       update_size=bool(req.get("update_size", True)))
        if req.get("compute_checksum") and fd["written"]:
            self.catalog.checksum(self.user, fd["obj"].path, force=True)
        self.reply()

    def fd_info(self, req: dict, _bs):
        index = int(req["fd"])
        fd = self.fds.get(index)
        if fd is None:
            raise IrodsError(c.SYS_FILE_DESC_OUT_OF_RANGE, "bad descriptor")
        obj = fd["obj"]
        self.reply(msg=bin_json({
            "l1desc_index": index, "replica_token": fd["token"], "open_flags": fd["flags"],
            "operation_type": 1 if fd["writing"] else 2, "bytes_written": fd["fh"].tell() if fd["written"] else 0,
            "data_object_info": {
                "object_path": obj.path, "data_id": obj.id, "replica_number": 0,
                "replica_status": 2 if self.catalog.is_intermediate(obj) else 1,
                "resource_hierarchy": "demoResc", "resource_name": "demoResc", "data_size": obj.size,
                "checksum": obj.checksum, "file_path": str(self.catalog.physical(obj)),
            },
        }))

    def obj_chksum(self, root, _bs):
        opts = kv_pairs(root.find("KeyValPair_PI"))
        value = self.catalog.checksum(self.user, root.findtext("objPath"), force="forceChksum" in opts)
        self.reply(msg=xml("STR_PI", ("myStr", value)))

    def obj_unlink(self, root, _bs):
        opts = kv_pairs(root.find("KeyValPair_PI"))
        unregister = int(root.findtext("oprType") or 0) == UNREG_OPR
        self.catalog.unlink_obj(self.user, root.findtext("objPath"), force="forceFlag" in opts,
                                unregister=unregister)
        self.reply()

    def obj_rename(self, root, _bs):
        src, dst = root.find("DataObjInp_PI"), root.findall("DataObjInp_PI")[-1]
        opr = int(src.findtext("oprType") or 0)
        kind = {RENAME_DATA_OBJ: "obj", RENAME_COLL: "coll"}.get(opr, "any")
        self.catalog.rename(self.user, src.findtext("objPath"), dst.findtext("objPath"), kind)
        self.reply()

    def obj_copy(self, root, _bs):
        """``icp`` (rsDataObjCopy.cpp ``rsDataObjCopy_impl``): the source must be a data object and the
        destination absolute (USER_INPUT_PATH_ERR); an existing destination needs forceFlag."""
        src, dst = root.find("DataObjInp_PI"), root.findall("DataObjInp_PI")[-1]
        opts = kv_pairs(dst.find("KeyValPair_PI"))
        cat = self.catalog
        spath, dpath = src.findtext("objPath") or "", dst.findtext("objPath") or ""
        with cat.lock:
            sobj = cat.objs.get(c.normalize(spath)) if spath.startswith("/") else None
            if sobj is None or not dpath.startswith("/"):
                raise IrodsError(c.USER_INPUT_PATH_ERR, f"cannot copy {spath} to {dpath}")
            cat.require(self.user, sobj.path, c.READ)
            if c.normalize(dpath) in cat.objs and "forceFlag" not in opts:
                raise IrodsError(c.OVERWRITE_WITHOUT_FORCE_FLAG, f"{dpath} exists; overwrite needs forceFlag")
        obj, token = cat.open_obj(self.user, dst.findtext("objPath"), 0, True, force="forceFlag" in opts)
        try:
            with open(cat.physical(sobj), "rb") as fin, open(cat.physical(obj), "wb") as fout:
                for block in iter(lambda: fin.read(1 << 20), b""):
                    fout.write(block)
        finally:
            cat.release(obj, token, written=True, finalize=True, reg_chksum=False)
        with cat.lock:
            obj.data_type = sobj.data_type
        if sobj.checksum or "regChksum" in opts or "verifyChksum" in opts:  # rsDataObjCopy keeps a checksum
            cat.checksum(self.user, obj.path, force=True)
        self.reply()

    def obj_truncate(self, root, _bs):
        """rsDataObjTruncate.cpp: shorten (or extend) the replica; write access; the checksum goes."""
        cat = self.catalog
        path = c.normalize(root.findtext("objPath"))
        size = int(root.findtext("dataSize") or 0)
        with cat.lock:
            obj = cat.objs.get(path)
            if obj is None:
                raise IrodsError(c.OBJ_PATH_DOES_NOT_EXIST, f"data object {path} does not exist")
            cat.require(self.user, path, c.WRITE)
            if obj.id in cat.locks:
                raise IrodsError(c.INTERMEDIATE_REPLICA_ACCESS, f"{path} is intermediate (opened for writing)")
            if size < 0:
                raise IrodsError(c.SYS_INVALID_INPUT_PARAM, "negative size")
            os.truncate(cat.physical(obj), size)
            obj.size, obj.checksum, obj.mtime = size, "", c.now()
            cat.mark()
        self.reply()

    def phy_path_reg(self, root, _bs):
        """``ireg``: an admin registers a file of this server. plugins/api/src/register_physical_path.cpp
        asks ``getchkPathPerm`` (server/core/src/physPath.cpp): no check for the admin, else the policy
        ``acSetChkFilePathPerm``, by default ``disallowPathReg``: PATH_REG_NOT_ALLOWED (fileOpr.cpp)."""
        opts = kv_pairs(root.find("KeyValPair_PI"))
        cat = self.catalog
        if not cat.is_admin(self.user):
            raise IrodsError(c.PATH_REG_NOT_ALLOWED, "registering a physical path is not allowed")
        phys = opts.get("filePath", "")
        logical = c.normalize(root.findtext("objPath"))
        if not phys or not os.path.isabs(phys):
            raise IrodsError(c.USER_INPUT_PATH_ERR, "filePath must be an absolute physical path")
        if "collection" in opts:
            if not os.path.isdir(phys):
                raise IrodsError(c.USER_FILE_DOES_NOT_EXIST, f"{phys} is not a directory")
            cat.create_coll(self.user, logical, recursive=True)
            for dirpath, dirnames, filenames in os.walk(phys):
                rel = os.path.relpath(dirpath, phys)
                base = logical if rel == "." else f"{logical}/{rel}"
                for d in dirnames:
                    cat.create_coll(self.user, f"{base}/{d}", recursive=True)
                for f in filenames:
                    cat.register_obj(self.user, f"{base}/{f}", os.path.join(dirpath, f))
        else:
            if not os.path.isfile(phys):
                raise IrodsError(c.USER_FILE_DOES_NOT_EXIST, f"{phys} does not exist")
            obj = cat.register_obj(self.user, logical, phys)
            if "regChksum" in opts or "verifyChksum" in opts:
                cat.checksum(self.user, obj.path, force=True)
        self.reply()

    def general_admin(self, root, _bs):
        args = [root.findtext(f"arg{i}") or "" for i in range(10)]
        if args[:2] == ["modify", "user"] and args[3] == "password":
            args[4] = decode_new_password(args[4], self.catalog.users[self.user]["password"], self.signature)
        self.catalog.admin_op(self.user, args)
        self.reply()

    def user_admin(self, root, _bs):
        """``ipasswd`` (rsUserAdmin.cpp ``userpw``): a user changes its own password."""
        args = [root.findtext(f"arg{i}") or "" for i in range(10)]
        if args[0] != "userpw" or args[2] != "password" or args[1] != self.user:
            raise IrodsError(c.SYS_NOT_SUPPORTED, f"user admin operation {args[0]} is not supported by the stand-in")
        new = decode_new_password(args[3], self.catalog.users[self.user]["password"], self.signature)
        with self.catalog.lock:
            self.catalog.users[self.user]["password"] = new
            self.catalog.mark()
        self.reply()

    def mod_avu(self, root, _bs):
        args = [root.findtext(f"arg{i}") or "" for i in range(10)]
        opts = kv_pairs(root.find("KeyValPair_PI"))
        op, kind, name = args[0], args[1], args[2]
        if op == "cp":
            self.catalog.mod_avu(self.user, op, kind, "", [args[3], args[2], args[4]], admin="irodsAdmin" in opts)
        else:
            self.catalog.mod_avu(self.user, op, kind, name, args[3:], admin="irodsAdmin" in opts)
        self.reply()

    def atomic_meta(self, req: dict, _bs):
        """rs_atomic_apply_metadata_operations.cpp: all operations or none."""
        kind = {"data_object": "-d", "collection": "-C", "user": "-u", "resource": "-R"}.get(req.get("entity_type"))
        if kind is None:
            raise IrodsError(c.SYS_INVALID_INPUT_PARAM, "unknown entity_type")
        cat = self.catalog
        name = req.get("entity_name", "")
        with cat.lock:
            try:
                meta = cat.meta_target(self.user, kind, name, c.CREATE_METADATA,
                                       admin=bool(req.get("admin_mode")) and cat.is_admin(self.user))
            except IrodsError as exc:  # the JSON error document of the API (error_message, as iRODS words it)
                text = (f"Entity does not exist [entity_name={name}]"
                        if exc.code in (c.CAT_UNKNOWN_FILE, c.CAT_UNKNOWN_COLLECTION, c.CAT_INVALID_USER) else exc.msg)
                self.error(exc.code, text, msg=bin_json({"error_message": text, "error_code": exc.code}))
                return
            saved = [dict(m) for m in meta]
            try:
                for op in req.get("operations", []):
                    a, v, u = op.get("attribute", ""), op.get("value", ""), op.get("units", "")
                    if op.get("operation") == "add":
                        if not any((m["a"], m["v"], m["u"]) == (a, v, u) for m in meta):
                            meta.append(cat._avu(a, v, u))
                    elif op.get("operation") == "remove":
                        meta[:] = [m for m in meta if (m["a"], m["v"], m["u"]) != (a, v, u)]
                    else:
                        raise IrodsError(c.SYS_INVALID_INPUT_PARAM, "unknown operation")
            except IrodsError:
                meta[:] = saved
                raise
            cat.mark()
        self.reply(msg=bin_json({}))

    def mod_acl(self, root, _bs):
        self.catalog.mod_access(self.user, root.findtext("accessLevel") or "", root.findtext("userName") or "",
                                root.findtext("zone") or "", root.findtext("path") or "",
                                recursive=int(root.findtext("recursiveFlag") or 0) != 0)
        self.reply()

    def touch(self, req: dict, _bs):
        """rs_touch.cpp: set the mtime of an object or collection (write access), create an object unless no_create."""
        cat = self.catalog
        path = c.normalize(req.get("logical_path", ""))
        opts = req.get("options", {})
        with cat.lock:
            item = cat.entity(path)
            if item is None:
                if opts.get("no_create"):
                    self.reply()
                    return
                cat.open_obj(self.user, path, 64, False, False)
                obj = cat.objs[path]
                cat.release(obj, cat.locks[obj.id].token, written=False, finalize=True, reg_chksum=False)
                item = obj
            cat.require(self.user, path, c.WRITE)
            if "seconds_since_epoch" in opts:
                item.mtime = f"{int(opts['seconds_since_epoch']):011d}"
            elif "reference" in opts:
                ref = cat.entity(c.normalize(opts["reference"]))
                if ref is None:
                    raise IrodsError(c.OBJ_PATH_DOES_NOT_EXIST, "reference does not exist")
                item.mtime = ref.mtime
            else:
                item.mtime = c.now()
            cat.mark()
        self.reply()

    def mod_obj_meta(self, root, _bs):
        info = root.find("DataObjInfo_PI")
        reg = kv_pairs(root.find("KeyValPair_PI"))
        cat = self.catalog
        path = c.normalize(info.findtext("objPath"))
        with cat.lock:
            obj = cat.objs.get(path)
            if obj is None:
                raise IrodsError(c.CAT_UNKNOWN_FILE, f"data object {path} does not exist")
            cat.require(self.user, path, c.WRITE)
            for key, attr in (("dataType", "data_type"), ("dataComments", "comments"), ("dataExpiry", "expiry")):
                if key in reg:
                    setattr(obj, attr, reg[key])
            cat.mark()
        self.reply()


def order_and_aggregate(rows: list[list[str]], ivals: list[int]) -> list[list[str]]:
    """ORDER_BY / ORDER_BY_DESC (0x400 / 0x800) and SELECT_MIN..SELECT_COUNT (2..6) of GenQuery."""
    aggs = [v & 0xF for v in ivals]
    if any(a in (2, 3, 4, 5, 6) for a in aggs):
        groups: dict[tuple, list[list[str]]] = {}
        for r in rows:
            groups.setdefault(tuple(x for x, a in zip(r, aggs, strict=True) if a not in (2, 3, 4, 5, 6)), []).append(r)
        out = []
        for _key, members in groups.items():
            row = []
            for i, a in enumerate(aggs):
                col = [m[i] for m in members]
                nums = [float(x) for x in col if x not in ("", None)] if a in (4, 5) else []
                if a == 2:
                    row.append(min(col))
                elif a == 3:
                    row.append(max(col))
                elif a == 4:
                    row.append(_fmt(sum(nums)))
                elif a == 5:
                    row.append(_fmt(sum(nums) / len(nums)) if nums else "")
                elif a == 6:
                    row.append(str(len(col)))
                else:
                    row.append(col[0])
            out.append(row)
        rows = out
    rows = sorted(rows)
    for i in reversed([i for i, v in enumerate(ivals) if v & 0xC00]):
        rows.sort(key=lambda r, i=i: _sort_key(r[i]), reverse=bool(ivals[i] & 0x800))
    return rows


def _fmt(x: float) -> str:
    return str(int(x)) if x == int(x) else str(x)


def _sort_key(value: str):
    return (0, float(value), "") if value.lstrip("-").replace(".", "", 1).isdigit() else (1, 0.0, value)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_server(host: str, port: int, cat: Catalog) -> Server:
    handler = type("BoundHandler", (Handler,), {"catalog": cat})
    return Server((host, port), handler)
