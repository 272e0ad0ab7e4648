"""Fail at once, with what to do, when a service the project needs is not running."""

from __future__ import annotations

import sys

from devstack.procs import port_open

SERVICES = {
    "postgres": (5432, "PostgreSQL", "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"),
    "rabbitmq": (5672, "RabbitMQ", "rabbitmq-server -detached"),
    "redis": (6379, "Redis", "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no"),
}


class MissingService(RuntimeError):
    pass


def missing(*names: str) -> list[str]:
    return [name for name in names if not port_open(SERVICES[name][0], timeout=2)]


def require_services(*names: str) -> None:
    gone = missing(*names)
    if gone:
        lines = [f"  - {SERVICES[n][1]} is not listening on 127.0.0.1:{SERVICES[n][0]}; start it with: "
                 f"{SERVICES[n][2]}" for n in gone]
        raise MissingService("required services are not running:\n" + "\n".join(lines))


def main(argv: list[str]) -> int:
    names = argv or list(SERVICES)
    try:
        require_services(*names)
    except MissingService as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("services up: " + ", ".join(SERVICES[n][1] for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
