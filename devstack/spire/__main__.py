"""``python -m devstack.spire {server|agent} run [flags]`` with the real ``spire-server run`` /
``spire-agent run`` flags (Go style: ``-flag value``, ``-flag=value`` or ``--flag value``).

Agent:  ``python -m devstack.spire agent run -config agent.conf -joinToken <token>``
Server: ``python -m devstack.spire server run -serverPort 8081 -trustDomain hpcs.local -dataDir D
        -adminTokenFile F`` (or ``-config server.conf``)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from devstack.hcl import HCLError, blocks, loads


def read_config(path: str | None, section: str, expand_env: bool) -> dict[str, Any]:
    if not path:
        return {}
    text = Path(path).read_text()
    if expand_env:
        text = os.path.expandvars(text)
    try:
        doc = loads(text)
    except HCLError as exc:
        raise SystemExit(f"could not parse {path}: {exc}") from exc
    found = blocks(doc, section)
    if not found:
        raise SystemExit(f"{path}: no {section} {{ ... }} block")
    return dict(found[0].body)  # plugins { ... } and the rest are accepted and ignored


def with_overrides(cfg: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The configuration file's values, overridden by the flags that were given (as spire does)."""
    return {**cfg, **{k: v for k, v in overrides.items() if v}}


def setup_logging(level: str | None, log_file: str | None) -> None:
    kwargs: dict[str, Any] = {
        "format": "%(asctime)s %(name)s %(levelname)s %(message)s",
        "level": (level or "INFO").upper(),
    }
    if log_file:
        kwargs["filename"] = log_file
    logging.basicConfig(**kwargs)


def run_until_signal(coro_factory) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await coro_factory(stop)

    asyncio.run(main())


def agent_run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m devstack.spire agent run")
    for name in (
        "config",
        "joinToken",
        "socketPath",
        "serverAddress",
        "serverPort",
        "trustDomain",
        "dataDir",
        "logLevel",
        "logFile",
        "trustBundle",
        "trustBundleUrl",
        "logFormat",
    ):
        p.add_argument(f"-{name}", f"--{name}", dest=name)
    for flag in ("insecureBootstrap", "expandEnv", "allowUnsafeIds"):
        p.add_argument(f"-{flag}", f"--{flag}", dest=flag, action="store_true")
    args = p.parse_args(argv)
    cfg = read_config(args.config, "agent", args.expandEnv)
    overrides = {
        "join_token": args.joinToken,
        "socket_path": args.socketPath,
        "server_address": args.serverAddress,
        "server_port": args.serverPort,
        "trust_domain": args.trustDomain,
        "data_dir": args.dataDir,
        "log_level": args.logLevel,
    }
    cfg = with_overrides(cfg, overrides)
    cfg.setdefault("data_dir", "./.data")
    cfg.setdefault("socket_path", "/tmp/spire-agent/public/api.sock")
    missing = [k for k in ("server_address", "server_port", "trust_domain") if not cfg.get(k)]
    if missing:
        raise SystemExit(f"agent configuration is missing: {', '.join(missing)}")
    setup_logging(cfg.get("log_level"), args.logFile)
    from devstack.spire.agent import run_agent

    run_until_signal(lambda stop: run_agent(cfg, stop))


def server_run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m devstack.spire server run")
    for name in (
        "config",
        "bindAddress",
        "serverPort",
        "trustDomain",
        "dataDir",
        "logLevel",
        "logFile",
        "adminTokenFile",
        "jwtIssuer",
        "logFormat",
        "socketPath",
    ):
        p.add_argument(f"-{name}", f"--{name}", dest=name)
    p.add_argument("-expandEnv", "--expandEnv", dest="expandEnv", action="store_true")
    args = p.parse_args(argv)
    cfg = read_config(args.config, "server", args.expandEnv)
    overrides = {
        "bind_address": args.bindAddress,
        "bind_port": args.serverPort,
        "trust_domain": args.trustDomain,
        "data_dir": args.dataDir,
        "log_level": args.logLevel,
        "jwt_issuer": args.jwtIssuer,
        "admin_token_file": args.adminTokenFile,
    }
    cfg = with_overrides(cfg, overrides)
    if not cfg.get("trust_domain"):
        raise SystemExit("server configuration is missing: trust_domain")
    setup_logging(cfg.get("log_level"), args.logFile)
    data_dir = Path(cfg.get("data_dir", "./.data"))
    data_dir.mkdir(parents=True, exist_ok=True)
    token_file = Path(cfg.get("admin_token_file") or data_dir / "admin-token")
    if token_file.exists() and token_file.read_text().strip():
        admin_token = token_file.read_text().strip()
    else:
        admin_token = secrets.token_urlsafe(32)
        token_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(admin_token + "\n")
    from devstack.spire.server import SpireServer, serve

    server = SpireServer(
        trust_domain=cfg["trust_domain"],
        data_dir=data_dir,
        admin_token=admin_token,
        jwt_issuer=cfg.get("jwt_issuer"),
        jwt_svid_ttl=int(cfg.get("default_jwt_svid_ttl_seconds") or 300),
    )
    host = cfg.get("bind_address", "127.0.0.1")
    port = int(cfg.get("bind_port", 8081))
    run_until_signal(lambda stop: serve(server, host, port, stop))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[0] not in ("agent", "server") or argv[1] != "run":
        raise SystemExit(__doc__)
    (agent_run if argv[0] == "agent" else server_run)(argv[2:])


if __name__ == "__main__":
    main()
