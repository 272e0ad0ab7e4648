"""``python -m devstack.vault --port 8200 [--root-token T | --root-token-file F] [--state-dir D]``."""

from __future__ import annotations

import os

# Vault's LIST verb is not a method aiohttp's C parser (llhttp) accepts: use the Python parser.
os.environ.setdefault("AIOHTTP_NO_EXTENSIONS", "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import logging  # noqa: E402
import secrets  # noqa: E402
import signal  # noqa: E402
from pathlib import Path  # noqa: E402


def root_token(args: argparse.Namespace) -> str:
    if args.root_token:
        if args.root_token_file:  # publish it for peers (the HPCS server stand-in reads it)
            path = Path(args.root_token_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(args.root_token + "\n")
        return args.root_token
    if args.root_token_file:
        path = Path(args.root_token_file)
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        token = "hvs." + secrets.token_urlsafe(18)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        return token
    raise SystemExit("one of --root-token or --root-token-file is required")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.vault", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    # as real Vault's dev mode (VAULT_DEV_ROOT_TOKEN_ID): a token on the command line is visible to `ps`
    parser.add_argument("--root-token", default=os.environ.get("VAULT_DEV_ROOT_TOKEN_ID"),
                        help="the root token (development only; default $VAULT_DEV_ROOT_TOKEN_ID)")
    parser.add_argument("--root-token-file", help="read the root token from here, or write a new one")
    parser.add_argument("--state-dir", help="persist the state as JSON in this directory")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from devstack.vault.server import VaultState, serve

    state_dir = Path(args.state_dir) if args.state_dir else None
    if state_dir:
        state_dir.mkdir(parents=True, exist_ok=True)
    state = VaultState(state_dir)
    token = root_token(args)
    if token not in state.tokens:
        state.add_token(policies=["root"], ttl=0, path="auth/token/root", display_name="root", token_id=token)
        state.save()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(args.host, args.port, state, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
