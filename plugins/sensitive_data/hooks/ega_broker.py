"""Hook for the EGA node's AMQP broker (RabbitMQ): connection ``lega_broker``.

Connection fields: host, port, login, password, schema (the vhost, "/" when empty). Extra:
``exchange`` (CEGA's topic exchange, "cega"), ``files_queue`` ("files"), ``accession_queue``
("stableIDs"), ``dead_letter_queue`` ("dead_letters"), ``ssl`` (false).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from include.ega.broker import Broker, BrokerSettings


class EgaBrokerHook(BaseHook):
    """:param lega_broker_conn_id: the broker connection"""

    conn_name_attr = "lega_broker_conn_id"
    default_conn_name = "lega_broker"
    conn_type = "amqp"
    hook_name = "EGA AMQP broker"

    def __init__(self, lega_broker_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.lega_broker_conn_id = lega_broker_conn_id

    @staticmethod
    def settings_from_connection(conn: Any) -> BrokerSettings:
        extra = conn.extra_dejson or {}
        defaults = BrokerSettings()
        return BrokerSettings(
            host=conn.host or defaults.host,
            port=int(conn.port or defaults.port),
            user=conn.login or defaults.user,
            password=conn.password or defaults.password,
            vhost=conn.schema or "/",
            exchange=extra.get("exchange", defaults.exchange),
            files_queue=extra.get("files_queue", defaults.files_queue),
            accession_queue=extra.get("accession_queue", defaults.accession_queue),
            dead_letter_queue=extra.get("dead_letter_queue", defaults.dead_letter_queue),
            ssl=str(extra.get("ssl", "false")).lower() in ("1", "true", "yes"),
        )

    def get_settings(self) -> BrokerSettings:
        return self.settings_from_connection(self.get_connection(self.lega_broker_conn_id))

    async def aget_settings(self) -> BrokerSettings:
        return self.settings_from_connection(await self.aget_connection(self.lega_broker_conn_id))

    def get_conn(self) -> Broker:
        """A ``Broker`` (blocking pika connection, publisher confirms); close it when done."""
        return Broker(self.get_settings())

    def test_connection(self) -> tuple[bool, str]:
        try:
            with self.get_conn() as broker:
                broker.channel()
            return True, "connected"
        except Exception as exc:  # noqa: BLE001 - reported to the UI
            return False, str(exc)
