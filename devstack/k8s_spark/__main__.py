"""``python -m devstack.k8s_spark --port 6443 --state-dir D --token TOKEN=USER@NS1,NS2 [--token ...]
[--spark-submit PATH] [--max-cores N]``: the Kubernetes API subset of the Spark Operator path, running
each SparkApplication with a local ``spark-submit``; the driver's attestation root key is written
to ``<state-dir>/attestation-root.{key,pub}``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path

from aiohttp import web

from devstack.k8s_spark.server import K8sSpark, Token


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m devstack.k8s_spark", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6443)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--token", action="append", default=[],
                   help="TOKEN=USER@NS1,NS2 (repeat); default: $SDP_K8S_TOKENS, space-separated (keeps them off argv)")
    p.add_argument("--spark-submit", help="spark-submit to run applications with (default: next to python)")
    p.add_argument("--max-cores", type=int, help="cap of local[N] (default: the machine's CPUs)")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = K8sSpark(
        Path(args.state_dir),
        [Token(t) for t in args.token or os.environ.get("SDP_K8S_TOKENS", "").split()],
        spark_submit=args.spark_submit,
        max_cores=args.max_cores,
        public_url=f"http://{args.host}:{args.port}",
    )
    server.load()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = web.AppRunner(server.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, args.host, args.port).start()
        logging.getLogger("devstack.k8s_spark").info(
            "Kubernetes/Spark Operator stand-in on http://%s:%d", args.host, args.port
        )
        await stop.wait()
        await runner.cleanup()

    asyncio.run(run())


if __name__ == "__main__":
    main()
