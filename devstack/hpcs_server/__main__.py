"""``python -m devstack.hpcs_server --port 10080 --vault-url URL --vault-token-file F --spire-url URL
--spire-admin-token-file F --trust-domain hpcs.local [--workload-uid N] [--audience TESTING]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time
from pathlib import Path

from aiohttp import web

from devstack.hpcs_server.server import HPCSServer, wait_for


def read_secret(value: str | None, path: str | None, what: str) -> str:
    if value:
        return value
    if path:
        p = Path(path)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (p.exists() and p.read_text().strip()):
            time.sleep(0.2)  # written by a peer that may still be starting
        if p.exists() and p.read_text().strip():
            return p.read_text().strip()
        raise SystemExit(f"{what} file {path} is missing or empty")
    raise SystemExit(f"{what} is required")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m devstack.hpcs_server", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=10080)
    p.add_argument("--vault-url", required=True)
    p.add_argument("--vault-token", default=os.environ.get("HPCS_VAULT_TOKEN"),
                   help="default: $HPCS_VAULT_TOKEN (keeps it off argv)")
    p.add_argument("--vault-token-file")
    p.add_argument("--spire-url", required=True)
    p.add_argument("--spire-admin-token")
    p.add_argument("--spire-admin-token-file")
    p.add_argument("--trust-domain", default="hpcs.local")
    p.add_argument(
        "--workload-uid",
        type=int,
        default=os.getuid(),
        help="uid in the unix:uid selector of registered clients' workloads (CSC: 0)",
    )
    p.add_argument("--audience", default="TESTING", help="JWT-SVID audience of HPCS (CSC: TESTING)")
    p.add_argument(
        "--no-bootstrap-vault",
        action="store_true",
        help="do not enable JWT auth and the kv v2 mount in Vault at start",
    )
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = HPCSServer(
        vault_url=args.vault_url,
        vault_token=read_secret(args.vault_token, args.vault_token_file, "vault token"),
        spire_url=args.spire_url,
        spire_admin_token=read_secret(
            args.spire_admin_token, args.spire_admin_token_file, "SPIRE admin token"
        ),
        trust_domain=args.trust_domain,
        workload_uid=args.workload_uid,
        audience=args.audience,
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        app = server.app()
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()  # runs on_startup: the upstream session exists from here
        if not args.no_bootstrap_vault:
            await wait_for(server.bootstrap_vault)
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        logging.getLogger("devstack.hpcs_server").info(
            "HPCS server stand-in on http://%s:%d", args.host, args.port
        )
        await stop.wait()
        await runner.cleanup()

    asyncio.run(run())


if __name__ == "__main__":
    main()
