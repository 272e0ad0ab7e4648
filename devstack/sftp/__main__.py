"""``python -m devstack.sftp --port N --root DIR [--authorized-keys FILE] [--host-key FILE]
[--state-dir DIR] [--user NAME]``.

With ``--state-dir``, missing keys are generated there: the host key ``ssh_host_ed25519_key`` and a
client key pair ``id_ed25519`` / ``id_ed25519.pub`` written to ``authorized_keys``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from devstack.sftp.server import ensure_keys, start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m devstack.sftp", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2222)
    p.add_argument("--root", required=True, help="the directory served (clients cannot leave it)")
    p.add_argument("--authorized-keys", help="OpenSSH authorized_keys (default: STATE/authorized_keys)")
    p.add_argument(
        "--host-key", help="host private key, generated if missing (default: STATE/ssh_host_ed25519_key)"
    )
    p.add_argument("--state-dir", help="where generated keys go")
    p.add_argument("--user", help="accept only this user name (default: any name with an authorised key)")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    state = Path(args.state_dir) if args.state_dir else None
    if state:
        state.mkdir(parents=True, exist_ok=True)
    if not args.authorized_keys and not state:
        raise SystemExit("--authorized-keys or --state-dir is required")
    if not args.host_key and not state:
        raise SystemExit("--host-key or --state-dir is required")
    authorized = Path(args.authorized_keys) if args.authorized_keys else state / "authorized_keys"
    host_key = Path(args.host_key) if args.host_key else state / "ssh_host_ed25519_key"
    ensure_keys(state, host_key, authorized)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        acceptor = await start(args.host, args.port, Path(args.root), authorized, host_key, args.user)
        logging.getLogger("devstack.sftp").info("sftp on %s:%d serving %s", args.host, args.port, args.root)
        await stop.wait()
        acceptor.close()
        await acceptor.wait_closed()

    asyncio.run(run())


if __name__ == "__main__":
    main()
