"""Deferrable waiting of the EGA pipeline: for CEGA's accession ids of verified files.

``EgaAccessionTrigger`` (a ``PollingTrigger``) holds no worker slot. Every ``poll_interval``
seconds it records the accession messages waiting in ``stableIDs`` (each kept in the database,
then acknowledged, so any waiting trigger may take any message) and fires as soon as one of its
files can move on: its accession has arrived, or it is no longer ``verified``. The blocking
database and broker calls run in a thread; connections are resolved asynchronously first.
A broker or database that is down or restarting is waited for; one that refuses our credentials
ends the wait at once with an error event. The deadline is the operator's ``defer(timeout=...)``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sensitive_data.triggers.base import PollingTrigger


class EgaAccessionTrigger(PollingTrigger):
    """:param file_ids: the files waiting for their accession
    :param lega_db_conn_id: the EGA database connection
    :param lega_broker_conn_id: the broker connection
    :param poll_interval: seconds between polls
    """

    def __init__(
        self,
        file_ids: list[str],
        lega_db_conn_id: str = "lega_db",
        lega_broker_conn_id: str = "lega_broker",
        poll_interval: float = 5.0,
    ):
        super().__init__(poll_interval=poll_interval)
        self.file_ids = list(file_ids)
        self.lega_db_conn_id = lega_db_conn_id
        self.lega_broker_conn_id = lega_broker_conn_id
        self._db_kwargs: dict[str, Any] = {}
        self._broker_settings: Any = None

    def describe(self) -> str:
        return f"the accession of {len(self.file_ids)} file(s) from Central EGA"

    async def setup(self) -> None:
        from sensitive_data.hooks.ega_broker import EgaBrokerHook
        from sensitive_data.hooks.ega_db import EgaDbHook

        self._db_kwargs = EgaDbHook.connect_kwargs(
            await EgaDbHook(self.lega_db_conn_id).aget_connection(self.lega_db_conn_id)
        )
        self._broker_settings = await EgaBrokerHook(self.lega_broker_conn_id).aget_settings()

    async def poll(self) -> dict[str, Any] | None:
        movable = await asyncio.to_thread(self.movable_files, self._db_kwargs, self._broker_settings, self.file_ids)
        return {"status": "accession", "file_ids": movable} if movable else None

    @staticmethod
    def movable_files(db_kwargs: dict, broker_settings: Any, file_ids: list[str]) -> list[str]:
        """Record waiting accession messages; return the files that can move on."""
        from include.ega.broker import Broker
        from include.ega.db import open_database
        from include.ega.pipeline import Pipeline, drain_accessions

        db = open_database(db_kwargs, migrate=False)  # the operator migrated it before deferring
        try:
            with Broker(broker_settings) as broker:
                drain_accessions(Pipeline(db, None, None, None, broker.publish), broker)
            statuses = db.statuses(file_ids)
            ready = []
            for fid in file_ids:
                if statuses.get(fid) != "verified":
                    ready.append(fid)
                    continue
                rec = db.get(fid)
                if db.pending_accession(rec.user, rec.filepath):
                    ready.append(fid)
            return ready
        finally:
            db.close()
