"""An AMQP event trigger (there is no AMQP provider in Airflow): fires when a queue has messages.

Used by an ``AssetWatcher``: the trigger does not consume the messages, it only looks at the
queue's depth (a passive declare), so every message is still taken, recorded and acknowledged
by a task (acknowledged only once recorded). After firing it waits ``cooldown`` seconds, time for
the run it started to drain the queue, before it looks again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent


class AmqpMessageTrigger(BaseEventTrigger):
    """:param lega_broker_conn_id: the broker connection (see ``EgaBrokerHook``)
    :param queue: the queue to watch; default: the connection's ``files_queue``
    :param poll_interval: seconds between looks at the queue
    :param cooldown: seconds to wait after firing
    """

    def __init__(
        self,
        lega_broker_conn_id: str = "lega_broker",
        queue: str | None = None,
        poll_interval: float = 2.0,
        cooldown: float = 30.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.lega_broker_conn_id = lega_broker_conn_id
        self.queue = queue
        self.poll_interval = poll_interval
        self.cooldown = cooldown

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "lega_broker_conn_id": self.lega_broker_conn_id,
                "queue": self.queue,
                "poll_interval": self.poll_interval,
                "cooldown": self.cooldown,
            },
        )

    async def _settings(self):
        from sensitive_data.hooks.ega_broker import EgaBrokerHook

        return await EgaBrokerHook(self.lega_broker_conn_id).aget_settings()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import aio_pika

        settings = await self._settings()
        queue = self.queue or settings.files_queue
        connection = None
        try:
            while True:
                try:
                    if connection is None or connection.is_closed:
                        connection = await aio_pika.connect(settings.url(), timeout=10)
                    channel = await connection.channel()
                    try:
                        declared = await channel.declare_queue(queue, passive=True)
                        count = declared.declaration_result.message_count
                    finally:
                        if not channel.is_closed:
                            await channel.close()
                except (TimeoutError, aio_pika.exceptions.AMQPException, OSError) as exc:
                    self.log.warning("AMQP queue %s not reachable (%s); retrying", queue, type(exc).__name__)
                    if connection is not None and not connection.is_closed:
                        await connection.close()
                    connection = None
                    await asyncio.sleep(max(self.poll_interval, 5.0))
                    continue
                if count:
                    self.log.info("%d message(s) waiting in %s", count, queue)
                    yield TriggerEvent({"queue": queue, "messages": count})
                    await asyncio.sleep(self.cooldown)
                else:
                    await asyncio.sleep(self.poll_interval)
        finally:
            if connection is not None and not connection.is_closed:
                await connection.close()
