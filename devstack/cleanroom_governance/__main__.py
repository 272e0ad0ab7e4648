"""``python -m devstack.cleanroom_governance --port 9290 --state-dir D --member ID=TOKEN [--member ...]
--attestation-root-file F``: the clean room governance service, one process for every member (a
member is the holder of its token). ``F`` is the confidential platform's attestation root public
key (written by ``devstack.k8s_spark``); attestation reports are checked against it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path

from aiohttp import web

from devstack.cleanroom_governance.server import Governance


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m devstack.cleanroom_governance", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9290)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--member", action="append", default=[],
                   help="ID=TOKEN of a consortium member (repeat); default: $SDP_CGS_MEMBERS, space-separated "
                        "(keeps the tokens off argv)")
    p.add_argument("--automation", action="append", default=[],
                   help="OWNER=TOKEN: an owner's automation identity (repeat); default: $SDP_CGS_AUTOMATION, "
                        "space-separated (keeps the tokens off argv)")
    p.add_argument("--attestation-root-file", required=True)
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    members = {}
    for item in args.member or os.environ.get("SDP_CGS_MEMBERS", "").split():
        member, _, token = item.partition("=")
        if not member or not token:
            p.error(f"--member {item!r}: give ID=TOKEN")
        members[member] = token
    if len(members) < 2:
        p.error("a consortium needs at least two members")
    automation = {}
    for item in args.automation or os.environ.get("SDP_CGS_AUTOMATION", "").split():
        owner, _, token = item.partition("=")
        if owner not in members or not token or token in members.values():
            p.error(f"--automation {item!r}: give OWNER=TOKEN for a member, with a token of its own")
        automation[owner] = token
    gov = Governance(members, Path(args.state_dir), Path(args.attestation_root_file), automation)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = web.AppRunner(gov.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, args.host, args.port).start()
        logging.getLogger("devstack.cleanroom_governance").info(
            "clean room governance stand-in on http://%s:%d (members: %s)", args.host, args.port, ", ".join(members)
        )
        await stop.wait()
        await runner.cleanup()

    asyncio.run(run())


if __name__ == "__main__":
    main()
