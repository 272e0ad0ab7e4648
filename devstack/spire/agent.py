"""SPIRE agent stand-in: redeems a join token with the server, then serves the SPIFFE Workload API
(gRPC ``SpiffeWorkloadAPI``) on a unix socket, attesting callers with the ``unix`` workload
attestor's selectors taken from the caller's peer credentials (``SO_PEERCRED``).

grpcio does not expose a connection's socket, so the public unix socket is served by a small
proxy that reads the peer credentials of each accepted connection and relays it to the gRPC
server on a loopback port, recording ``local port -> (pid, uid, gid)``; the servicer looks the
caller up by the peer address gRPC reports. A connection that did not come through the proxy
has no credentials and gets no identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import pwd
import socket
import struct
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import jwt as pyjwt
from google.protobuf import struct_pb2
from spiffe._proto import workload_pb2, workload_pb2_grpc

from devstack.spire.common import (
    JwtSvidError,
    SpiffeIdError,
    parse_spiffe_id,
    selector_str,
    validate_jwt_svid,
)

log = logging.getLogger("devstack.spire.agent")

SECURITY_HEADER = ("workload.spiffe.io", "true")


class AttestationError(Exception):
    pass


def unix_selectors(pid: int, uid: int, gid: int) -> set[str]:
    """The ``unix`` workload attestor's selectors for a process."""
    supplementary: list[int] = []
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        raise AttestationError(f"workload process {pid} is gone: {exc}") from exc
    for line in status.splitlines():
        if line.startswith("Groups:"):
            supplementary = [int(g) for g in line.split()[1:]]
    out = {f"unix:uid:{uid}", f"unix:gid:{gid}"}
    with contextlib.suppress(KeyError):
        out.add(f"unix:user:{pwd.getpwuid(uid).pw_name}")
    with contextlib.suppress(KeyError):
        out.add(f"unix:group:{grp.getgrgid(gid).gr_name}")
    for g in supplementary:
        out.add(f"unix:supplementary_gid:{g}")
        with contextlib.suppress(KeyError):
            out.add(f"unix:supplementary_group:{grp.getgrgid(g).gr_name}")
    return out


class ServerClient:
    """The agent's side of the (stand-in) agent API of the SPIRE server."""

    def __init__(self, base_url: str, data_dir: Path):
        self.base = base_url.rstrip("/")
        self.creds_file = data_dir / "agent_svid.json"
        self.secret = ""
        self.agent_id = ""
        self.trust_domain = ""
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ServerClient:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session:
            await self.session.close()

    async def _post(self, path: str, body: dict, auth: bool = True) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {self.secret}"} if auth else {}
        async with self.session.post(f"{self.base}{path}", json=body, headers=headers) as resp:
            try:
                data = await resp.json(content_type=None)
            except (json.JSONDecodeError, ValueError):
                data = {"error": await resp.text()}
            return resp.status, data

    async def attest(self, join_token: str | None) -> None:
        if self.creds_file.exists():
            saved = json.loads(self.creds_file.read_text())
            self.secret, self.agent_id = saved["agent_secret"], saved["agent_id"]
            status, _ = await self._post("/agent/v1/authorized_entries", {})
            if status == 200:
                self.trust_domain = saved.get("trust_domain", "")
                log.info("resumed as %s (saved credentials in %s)", self.agent_id, self.creds_file)
                return
            log.warning("saved agent credentials were refused (HTTP %s); attesting again", status)
        if not join_token:
            raise SystemExit("agent is not attested and no join token was given (-joinToken or agent.join_token)")
        status, data = await self._post("/agent/v1/attest", {"join_token": join_token}, auth=False)
        if status != 200:
            raise SystemExit(f"failed to attest agent: {data.get('error', status)}")
        self.secret, self.agent_id, self.trust_domain = (
            data["agent_secret"],
            data["agent_id"],
            data["trust_domain"],
        )
        self.creds_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.creds_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(
                {"agent_id": self.agent_id, "agent_secret": self.secret, "trust_domain": self.trust_domain},
                fh,
            )
        log.info("node attestation succeeded: %s", self.agent_id)

    async def entries(self) -> tuple[list[dict], dict]:
        status, data = await self._post("/agent/v1/authorized_entries", {})
        if status != 200:
            raise RuntimeError(f"fetching authorized entries failed: {data.get('error', status)}")
        return data["entries"], data["bundle"]

    async def jwt_svid(self, spiffe_id: str, audience: list[str]) -> str:
        status, data = await self._post("/agent/v1/jwt_svid", {"spiffe_id": spiffe_id, "audience": audience})
        if status != 200:
            raise RuntimeError(f"minting JWT-SVID failed: {data.get('error', status)}")
        return data["token"]


class WorkloadAPI(workload_pb2_grpc.SpiffeWorkloadAPIServicer):
    def __init__(self, client: ServerClient, peers: dict[int, tuple[int, int, int]]):
        self.client = client
        self.peers = peers

    @staticmethod
    async def check_header(context: grpc.aio.ServicerContext) -> None:
        if SECURITY_HEADER not in tuple(context.invocation_metadata() or ()):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "security header missing from request")

    async def identities(self, context: grpc.aio.ServicerContext) -> list[dict]:
        peer = context.peer() or ""
        try:
            port = int(peer.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            port = -1
        creds = self.peers.get(port)
        if creds is None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no identity issued")
        pid, uid, gid = creds
        try:
            selectors = unix_selectors(pid, uid, gid)
        except AttestationError as exc:
            log.warning("workload attestation failed: %s", exc)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no identity issued")
        entries, _ = await self.client.entries()
        matched = [e for e in entries if e["selectors"] and {selector_str(s) for s in e["selectors"]} <= selectors]
        log.debug("pid %s uid %s: %d selectors, %d identities", pid, uid, len(selectors), len(matched))
        return matched

    async def FetchJWTSVID(self, request, context):  # noqa: N802 - gRPC method name
        await self.check_header(context)
        audience = [a for a in request.audience if a]
        if not audience:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "audience must be specified")
        if request.spiffe_id:  # handler.go FetchJWTSVID: a requested ID must parse, before attestation
            try:
                parse_spiffe_id(request.spiffe_id)
            except SpiffeIdError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid requested SPIFFE ID: {exc}")
        identities = await self.identities(context)
        ids: list[str] = []
        for entry in identities:
            if entry["spiffe_id"] not in ids:
                ids.append(entry["spiffe_id"])
        if request.spiffe_id:
            ids = [i for i in ids if i == request.spiffe_id]
        if not ids:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no identity issued")
        svids = []
        for spiffe_id in ids:
            try:
                token = await self.client.jwt_svid(spiffe_id, audience)
            except RuntimeError as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"could not fetch JWT-SVID: {exc}")
            svids.append(workload_pb2.JWTSVID(spiffe_id=spiffe_id, svid=token))
        return workload_pb2.JWTSVIDResponse(svids=svids)

    async def FetchJWTBundles(self, request, context):  # noqa: N802
        await self.check_header(context)
        # pkg/agent/endpoints/workload/handler.go sendJWTBundlesResponse: without an identity
        # (no registration entry matches) the caller gets PermissionDenied "no identity issued"
        # (unless the agent's allow_unauthenticated_verifiers is set, which it is not here).
        if not await self.identities(context):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no identity issued")
        _, bundle = await self.client.entries()
        doc = {"keys": bundle["keys"]}
        yield workload_pb2.JWTBundlesResponse(bundles={self.client.trust_domain: json.dumps(doc).encode()})
        while True:  # a stream: updates would follow; the stand-in's key does not rotate
            await asyncio.sleep(3600)

    async def ValidateJWTSVID(self, request, context):  # noqa: N802
        await self.check_header(context)
        if not request.audience:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "audience must be specified")
        if not request.svid:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "svid must be specified")
        await self.identities(context)  # handler.go: the caller is attested (no entry needed)
        _, bundle = await self.client.entries()
        # handler.go keyStoreFromBundles: keys per trust domain (the agent has only its own bundle;
        # no federation here), looked up by the SVID subject's trust domain AND the kid.
        key_store = {self.client.trust_domain: {k.get("kid"): pyjwt.PyJWK(k).key for k in bundle["keys"]}}
        try:
            spiffe_id, claims = validate_jwt_svid(request.svid, key_store, request.audience)
        except (JwtSvidError, pyjwt.PyJWTError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if isinstance(claims.get("aud"), str):  # handler.go: aud is always returned as a list
            claims["aud"] = [claims["aud"]]
        st = struct_pb2.Struct()
        st.update({k: v for k, v in claims.items()})
        return workload_pb2.ValidateJWTSVIDResponse(spiffe_id=spiffe_id, claims=st)

    async def FetchX509SVID(self, request, context):  # noqa: N802
        await self.check_header(context)
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the devstack SPIRE agent issues JWT-SVIDs only")
        yield  # pragma: no cover - makes this a server-streaming handler

    async def FetchX509Bundles(self, request, context):  # noqa: N802
        await self.check_header(context)
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the devstack SPIRE agent serves JWT bundles only")
        yield  # pragma: no cover


class PeerCredProxy:
    """Accepts workload connections on the unix socket and relays them to the gRPC port."""

    def __init__(self, socket_path: Path, grpc_port: int, peers: dict[int, tuple[int, int, int]]):
        self.socket_path = socket_path
        self.grpc_port = grpc_port
        self.peers = peers
        self.server: asyncio.AbstractServer | None = None
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self.server = await asyncio.start_unix_server(self.accept, path=str(self.socket_path))
        os.chmod(self.socket_path, 0o777)  # as the real agent: any local process may ask

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        pid, uid, gid = struct.unpack(
            "3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        )
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.grpc_port)
        except OSError:
            writer.close()
            return
        port = up_writer.get_extra_info("sockname")[1]
        self.peers[port] = (pid, uid, gid)
        try:
            await asyncio.gather(self.pipe(reader, up_writer), self.pipe(up_reader, writer))
        finally:
            self.peers.pop(port, None)
            for w in (writer, up_writer):
                w.close()

    @staticmethod
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                if writer.can_write_eof():
                    writer.write_eof()

    async def stop(self) -> None:
        if self.server:
            self.server.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()


async def run_agent(config: dict[str, Any], stop: asyncio.Event) -> None:
    data_dir = Path(config["data_dir"])
    data_dir.mkdir(parents=True, exist_ok=True)
    base = f"http://{config['server_address']}:{config['server_port']}"
    async with ServerClient(base, data_dir) as client:
        await client.attest(config.get("join_token"))
        if config.get("trust_domain") and client.trust_domain and config["trust_domain"] != client.trust_domain:
            raise SystemExit(
                f"trust domain {config['trust_domain']!r} does not match the server's {client.trust_domain!r}"
            )
        peers: dict[int, tuple[int, int, int]] = {}
        server = grpc.aio.server()
        workload_pb2_grpc.add_SpiffeWorkloadAPIServicer_to_server(WorkloadAPI(client, peers), server)
        grpc_port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        proxy = PeerCredProxy(Path(config["socket_path"]), grpc_port, peers)
        await proxy.start()
        log.info("workload API listening on unix://%s (agent %s)", config["socket_path"], client.agent_id)
        try:
            await stop.wait()
        finally:
            await proxy.stop()
            await server.stop(grace=1)
            log.info("agent stopped")
