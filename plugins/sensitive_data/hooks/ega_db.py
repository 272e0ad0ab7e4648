"""Hook for the EGA database (PostgreSQL): connection ``lega_db``.

Connection fields: host, port, login, password, schema (the database name, "lega"). Extra:
``sslmode``. ``get_database()`` creates the database if it is missing and migrates the schema
(both idempotent), once per process.
"""

from __future__ import annotations

from typing import Any, ClassVar

import psycopg2
from airflow.sdk import BaseHook

from include.ega.db import Database, open_database


class EgaDbHook(BaseHook):
    """:param lega_db_conn_id: the database connection"""

    conn_name_attr = "lega_db_conn_id"
    default_conn_name = "lega_db"
    conn_type = "postgres"
    hook_name = "EGA database"

    _migrated: ClassVar[set[tuple]] = set()

    def __init__(self, lega_db_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.lega_db_conn_id = lega_db_conn_id

    @staticmethod
    def connect_kwargs(conn: Any) -> dict[str, Any]:
        extra = conn.extra_dejson or {}
        kw = {
            "host": conn.host or "127.0.0.1",
            "port": int(conn.port or 5432),
            "user": conn.login or "postgres",
            "dbname": conn.schema or "lega",
            "connect_timeout": 10,
            "application_name": "ega-pipeline",
            "keepalives": 1,
            "keepalives_idle": 30,
        }
        if conn.password:
            kw["password"] = conn.password
        if extra.get("sslmode"):
            kw["sslmode"] = extra["sslmode"]
        return kw

    @classmethod
    def database_from_kwargs(cls, kw: dict[str, Any], migrate: bool = True) -> Database:
        key = (kw["host"], kw["port"], kw["dbname"])
        db = open_database(kw, migrate=migrate and key not in cls._migrated)
        if migrate:
            cls._migrated.add(key)
        return db

    def get_conn(self) -> Any:
        return psycopg2.connect(**self.connect_kwargs(self.get_connection(self.lega_db_conn_id)))

    def get_database(self, migrate: bool = True) -> Database:
        """The EGA ``Database`` (reconnects once after a dropped connection); close it when done."""
        return self.database_from_kwargs(self.connect_kwargs(self.get_connection(self.lega_db_conn_id)), migrate)
