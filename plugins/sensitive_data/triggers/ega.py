"""Deferrable waiting of the EGA pipeline: for CEGA's accession ids of verified files.

``EgaAccessionTrigger`` holds no worker slot. Every ``poll_interval`` seconds it records the
accession messages waiting in ``stableIDs`` (each kept in the database, then acknowledged, so
any waiting trigger may take any message) and fires as soon as one of its files can move on:
its accession has arrived, or it is no longer ``verified``. The blocking database and broker
calls run in a thread; connections are resolved asynchronously first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class EgaAccessionTrigger(BaseTrigger):
    """:param file_ids: the files waiting for their accession
    :param lega_db_conn_id: the EGA database connection
    :param lega_broker_conn_id: the broker connection
    :param poll_interval: seconds between polls
    :param deadline: time.time() after which the trigger gives up (event status "timeout")
    """

    def __init__(
        self,
        file_ids: list[str],
        lega_db_conn_id: str = "lega_db",
        lega_broker_conn_id: str = "lega_broker",
        poll_interval: float = 5.0,
        deadline: float | None = None,
    ):
        super().__init__()
        self.file_ids = list(file_ids)
        self.lega_db_conn_id = lega_db_conn_id
        self.lega_broker_conn_id = lega_broker_conn_id
        self.poll_interval = poll_interval
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "file_ids": self.file_ids,
                "lega_db_conn_id": self.lega_db_conn_id,
                "lega_broker_conn_id": self.lega_broker_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
            },
        )

    @staticmethod
    def poll(db_kwargs: dict, broker_settings: Any, file_ids: list[str]) -> list[str]:
        """Record waiting accession messages; return the files that can move on."""
        from include.ega.broker import Broker
        from include.ega.pipeline import Pipeline, drain_accessions
        from sensitive_data.hooks.ega_db import EgaDbHook

        db = EgaDbHook.database_from_kwargs(db_kwargs)
        try:
            with Broker(broker_settings) as broker:
                drain_accessions(Pipeline(db, None, None, None, broker.publish), broker)
            statuses = db.statuses(file_ids)
            ready = []
            for fid in file_ids:
                status = statuses.get(fid)
                if status != "verified":
                    ready.append(fid)
                    continue
                rec = db.get(fid)
                if db.pending_accession(rec.user, rec.filepath):
                    ready.append(fid)
            return ready
        finally:
            db.close()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from sensitive_data.hooks.ega_broker import EgaBrokerHook
        from sensitive_data.hooks.ega_db import EgaDbHook

        db_kwargs = EgaDbHook.connect_kwargs(
            await EgaDbHook(self.lega_db_conn_id).aget_connection(self.lega_db_conn_id)
        )
        broker_settings = await EgaBrokerHook(self.lega_broker_conn_id).aget_settings()
        while True:
            try:
                movable = await asyncio.to_thread(self.poll, db_kwargs, broker_settings, self.file_ids)
            except Exception as exc:  # noqa: BLE001 - a service restart: keep waiting
                self.log.warning("accession poll failed (%s: %s); retrying", type(exc).__name__, exc)
                movable = []
            if movable:
                yield TriggerEvent({"status": "accession", "file_ids": movable})
                return
            if self.deadline is not None and time.time() > self.deadline:
                yield TriggerEvent({"status": "timeout", "file_ids": self.file_ids})
                return
            await asyncio.sleep(self.poll_interval)
