"""The database is the state machine: files, their checksums, an event log, accessions, datasets.

Statuses: submitted -> archived -> verified -> ready, plus error and disabled. Every change of
status is a conditional update (``UPDATE ... WHERE status = <expected>``), so a step that runs
twice, or two workers racing, change nothing the second time. ``Database`` takes a ``connect``
callable (psycopg2) and reconnects once on a dropped connection; a second failure is a
``TransientError``. The driver's exceptions stay in this module: a refused connection (unknown
user or database, bad password) is ``PermissionDenied``, an unreachable server ``TransientError``,
a unique constraint hit ``Conflict``. ``open_database`` is how the rest of the code gets one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras

from include.ega.errors import Conflict, PermissionDenied, TransientError

SCHEMA_VERSION = 1
STATUSES = ("submitted", "archived", "verified", "ready", "error", "disabled")
ACTIVE = ("submitted", "archived", "verified", "ready")

DDL = """
CREATE TABLE IF NOT EXISTS ega_schema_version (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS files (
    id uuid PRIMARY KEY,
    submission_user text NOT NULL,
    filepath text NOT NULL,
    status text NOT NULL CHECK (status IN ('submitted','archived','verified','ready','error','disabled')),
    correlation_id text NOT NULL,
    header bytea,
    archive_location text,
    archive_path text,
    archive_size bigint,
    decrypted_size bigint,
    session_key_checksum text,
    accession_id text UNIQUE,
    error_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- one live file per user and path; a file in error or disabled may be submitted again
CREATE UNIQUE INDEX IF NOT EXISTS files_live_user_path ON files (submission_user, filepath)
    WHERE status NOT IN ('error', 'disabled');
-- the same session key in two verified files means the same upload twice
CREATE UNIQUE INDEX IF NOT EXISTS files_session_key ON files (session_key_checksum)
    WHERE status IN ('verified', 'ready');
CREATE INDEX IF NOT EXISTS files_status ON files (status, updated_at);
CREATE TABLE IF NOT EXISTS checksums (
    file_id uuid NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    source text NOT NULL CHECK (source IN ('uploaded', 'archived', 'decrypted')),
    type text NOT NULL CHECK (type IN ('sha256', 'md5')),
    value text NOT NULL,
    PRIMARY KEY (file_id, source, type)
);
CREATE TABLE IF NOT EXISTS file_events (
    id bigserial PRIMARY KEY,
    file_id uuid REFERENCES files (id) ON DELETE CASCADE,
    event text NOT NULL,
    correlation_id text,
    message jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS file_events_file ON file_events (file_id, id);
-- accessions from CEGA, kept until (and after) they are applied to their file
CREATE TABLE IF NOT EXISTS accessions (
    submission_user text NOT NULL,
    filepath text NOT NULL,
    accession_id text NOT NULL,
    decrypted_checksums jsonb NOT NULL,
    correlation_id text,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (submission_user, filepath, accession_id)
);
CREATE TABLE IF NOT EXISTS datasets (
    dataset_id text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS dataset_files (
    dataset_id text NOT NULL REFERENCES datasets (dataset_id),
    file_id uuid NOT NULL REFERENCES files (id),
    PRIMARY KEY (dataset_id, file_id)
);
"""


def migrate(conn) -> int:
    """Create or upgrade the schema (idempotent, safe to run concurrently); returns the version."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('ega_schema'))")
        cur.execute(DDL)
        cur.execute("INSERT INTO ega_schema_version (version) VALUES (%s) ON CONFLICT DO NOTHING", (SCHEMA_VERSION,))
    return SCHEMA_VERSION


def create_database(admin_conn, name: str) -> bool:
    """``CREATE DATABASE name`` unless it exists (``admin_conn`` on another database, autocommit)."""
    admin_conn.autocommit = True
    with admin_conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone():
            return False
        try:
            cur.execute(f'CREATE DATABASE "{name.replace(chr(34), "")}"')
        except psycopg2.errors.DuplicateDatabase:
            return False
    return True


@dataclass
class FileRecord:
    id: str
    user: str
    filepath: str
    status: str
    correlation_id: str
    header: bytes | None
    archive_location: str | None
    archive_path: str | None
    archive_size: int | None
    decrypted_size: int | None
    accession_id: str | None
    error_reason: str | None
    checksums: dict[str, dict[str, str]]  # source -> {type: value}


_RETRYABLE = (psycopg2.OperationalError, psycopg2.InterfaceError)
# a connection refused for who we are or what we ask for: waiting does not help
_REFUSALS = ("authentication failed", "no pg_hba.conf entry", "does not exist", "permission denied")


def _connect_error(exc: Exception, what: str) -> Exception:
    """The pipeline's error for a failed connection: a refusal is a configuration error."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if any(r in text for r in _REFUSALS):
        return PermissionDenied(
            f"{what}: the EGA database refused the connection ({text})",
            hint="check the user, password and database name of the lega_db connection",
        )
    return TransientError(f"{what}: {text}")


def open_database(connect_kwargs: dict[str, Any], migrate: bool = True) -> Database:
    """A :class:`Database` over ``psycopg2.connect(**connect_kwargs)``; with ``migrate`` the
    database is created if missing and its schema migrated (both idempotent).

    :raises PermissionDenied: the server refuses the user or the database
    :raises TransientError: the server cannot be reached
    """
    if migrate:
        try:
            admin = psycopg2.connect(**{**connect_kwargs, "dbname": "postgres"})
        except _RETRYABLE as exc:
            raise _connect_error(exc, "cannot connect to the EGA database server") from None
        try:
            create_database(admin, connect_kwargs["dbname"])
        finally:
            admin.close()
    db = Database(lambda: psycopg2.connect(**connect_kwargs))
    if migrate:
        db.migrate()
    return db


class Database:
    """Operations on the EGA database; one short transaction per call."""

    def __init__(self, connect: Callable[[], Any]):
        self._connect = connect
        self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _connection(self):
        if self._conn is None or self._conn.closed:
            try:
                self._conn = self._connect()
            except _RETRYABLE as exc:
                raise _connect_error(exc, "cannot connect to the EGA database") from None
        return self._conn

    def _run(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(cursor)`` in one transaction; on a dropped connection reconnect and run it once more."""
        for attempt in (1, 2):
            conn = self._connection()
            try:
                with conn, conn.cursor(cursor_factory=psycopg2.extras.DictCursor) as cur:
                    return fn(cur)
            except psycopg2.errors.UniqueViolation as exc:
                raise Conflict(f"already taken: {exc.diag.constraint_name or 'a unique value'}") from None
            except _RETRYABLE as exc:
                self.close()
                if attempt == 2:
                    raise TransientError(f"EGA database connection failed: {exc}") from exc
        raise AssertionError("unreachable")

    def migrate(self) -> int:
        conn = self._connection()
        try:
            return migrate(conn)
        except _RETRYABLE as exc:
            self.close()
            raise TransientError(f"EGA database migration failed: {exc}") from exc

    # -- events ----------------------------------------------------------------------------
    @staticmethod
    def _event(cur, file_id: str | None, event: str, correlation_id: str | None, message: Any = None) -> None:
        cur.execute(
            "INSERT INTO file_events (file_id, event, correlation_id, message) VALUES (%s,%s,%s,%s)",
            (file_id, event, correlation_id, json.dumps(message) if message is not None else None),
        )

    def log_event(self, file_id: str | None, event: str, correlation_id: str | None, message: Any = None) -> None:
        self._run(lambda cur: self._event(cur, file_id, event, correlation_id, message))

    # -- files -----------------------------------------------------------------------------
    def register(
        self,
        user: str,
        filepath: str,
        correlation_id: str | None,
        message: dict,
        uploaded: dict[str, str] | None = None,
    ) -> tuple[str, bool]:
        """Record an ingest request: the live file of (user, filepath), or a new one.

        :return: (file id, created); a repeated trigger only adds an event.
        """

        def q(cur):
            new_id = str(uuid.uuid4())
            cur.execute(
                """INSERT INTO files (id, submission_user, filepath, status, correlation_id)
                   VALUES (%s, %s, %s, 'submitted', %s)
                   ON CONFLICT (submission_user, filepath) WHERE status NOT IN ('error', 'disabled')
                   DO NOTHING RETURNING id""",
                (new_id, user, filepath, correlation_id or new_id),
            )
            row = cur.fetchone()
            created = row is not None
            if not created:
                cur.execute(
                    """SELECT id FROM files WHERE submission_user = %s AND filepath = %s
                               AND status NOT IN ('error', 'disabled')""",
                    (user, filepath),
                )
                file_id = str(cur.fetchone()[0])
            else:
                file_id = new_id
            if created:
                for typ, value in (uploaded or {}).items():
                    cur.execute(
                        "INSERT INTO checksums VALUES (%s, 'uploaded', %s, %s) ON CONFLICT DO NOTHING",
                        (file_id, typ, value.lower()),
                    )
            self._event(cur, file_id, "submitted" if created else "resubmitted", correlation_id, message)
            return file_id, created

        return self._run(q)

    def get(self, file_id: str) -> FileRecord:
        def q(cur):
            cur.execute("SELECT * FROM files WHERE id = %s", (file_id,))
            r = cur.fetchone()
            if r is None:
                raise KeyError(file_id)
            cur.execute("SELECT source, type, value FROM checksums WHERE file_id = %s", (file_id,))
            sums: dict[str, dict[str, str]] = {}
            for source, typ, value in cur.fetchall():
                sums.setdefault(source, {})[typ] = value
            return FileRecord(
                id=str(r["id"]),
                user=r["submission_user"],
                filepath=r["filepath"],
                status=r["status"],
                correlation_id=r["correlation_id"],
                header=bytes(r["header"]) if r["header"] is not None else None,
                archive_location=r["archive_location"],
                archive_path=r["archive_path"],
                archive_size=r["archive_size"],
                decrypted_size=r["decrypted_size"],
                accession_id=r["accession_id"],
                error_reason=r["error_reason"],
                checksums=sums,
            )

        return self._run(q)

    def find_live(self, user: str, filepath: str) -> str | None:
        def q(cur):
            cur.execute(
                """SELECT id FROM files WHERE submission_user = %s AND filepath = %s
                           AND status NOT IN ('error', 'disabled')""",
                (user, filepath),
            )
            r = cur.fetchone()
            return str(r[0]) if r else None

        return self._run(q)

    def set_archived(
        self,
        file_id: str,
        header: bytes,
        location: str,
        path: str,
        size: int,
        archived_sha256: str,
        uploaded_sha256: str,
    ) -> bool:
        def q(cur):
            cur.execute(
                """UPDATE files SET status = 'archived', header = %s, archive_location = %s,
                           archive_path = %s, archive_size = %s, updated_at = now()
                           WHERE id = %s AND status = 'submitted'""",
                (psycopg2.Binary(header), location, path, size, file_id),
            )
            if cur.rowcount != 1:
                return False
            cur.execute(
                """INSERT INTO checksums VALUES (%s, 'archived', 'sha256', %s)
                           ON CONFLICT (file_id, source, type) DO UPDATE SET value = EXCLUDED.value""",
                (file_id, archived_sha256),
            )
            cur.execute(
                """INSERT INTO checksums VALUES (%s, 'uploaded', 'sha256', %s)
                           ON CONFLICT (file_id, source, type) DO NOTHING""",
                (file_id, uploaded_sha256),
            )
            self._event(cur, file_id, "archived", None, {"archive_path": path, "size": size})
            return True

        return self._run(q)

    def set_verified(self, file_id: str, session_key_checksum: str, size: int, sha256: str, md5: str) -> bool:
        """archived -> verified; raises ``Conflict`` for a reused session key."""

        def q(cur):
            cur.execute(
                """UPDATE files SET status = 'verified', session_key_checksum = %s, decrypted_size = %s,
                           updated_at = now() WHERE id = %s AND status = 'archived'""",
                (session_key_checksum, size, file_id),
            )
            if cur.rowcount != 1:
                return False
            for typ, value in (("sha256", sha256), ("md5", md5)):
                cur.execute(
                    """INSERT INTO checksums VALUES (%s, 'decrypted', %s, %s)
                               ON CONFLICT (file_id, source, type) DO UPDATE SET value = EXCLUDED.value""",
                    (file_id, typ, value),
                )
            self._event(cur, file_id, "verified", None, {"decrypted_size": size})
            return True

        return self._run(q)

    def session_key_in_use(self, file_id: str, checksum: str) -> str | None:
        def q(cur):
            cur.execute(
                """SELECT id FROM files WHERE session_key_checksum = %s AND id <> %s
                           AND status IN ('verified', 'ready')""",
                (checksum, file_id),
            )
            r = cur.fetchone()
            return str(r[0]) if r else None

        return self._run(q)

    def set_error(
        self,
        file_id: str,
        reason: str,
        from_statuses: tuple[str, ...] = ("submitted", "archived", "verified"),
    ) -> bool:
        def q(cur):
            cur.execute(
                """UPDATE files SET status = 'error', error_reason = %s, updated_at = now()
                           WHERE id = %s AND status = ANY(%s)""",
                (reason, file_id, list(from_statuses)),
            )
            changed = cur.rowcount == 1
            if changed:
                self._event(cur, file_id, "error", None, {"reason": reason})
            return changed

        return self._run(q)

    def record_accession(
        self,
        user: str,
        filepath: str,
        accession_id: str,
        decrypted_checksums: list,
        correlation_id: str | None,
        message: dict,
    ) -> None:
        def q(cur):
            cur.execute(
                """INSERT INTO accessions (submission_user, filepath, accession_id, decrypted_checksums,
                           correlation_id) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                (user, filepath, accession_id, json.dumps(decrypted_checksums), correlation_id),
            )
            cur.execute(
                """SELECT id FROM files WHERE submission_user = %s AND filepath = %s
                           AND status NOT IN ('error', 'disabled')""",
                (user, filepath),
            )
            r = cur.fetchone()
            self._event(cur, str(r[0]) if r else None, "accession_received", correlation_id, message)

        self._run(q)

    def pending_accession(self, user: str, filepath: str) -> dict | None:
        def q(cur):
            cur.execute(
                """SELECT accession_id, decrypted_checksums, correlation_id FROM accessions
                           WHERE submission_user = %s AND filepath = %s ORDER BY received_at DESC LIMIT 1""",
                (user, filepath),
            )
            r = cur.fetchone()
            return dict(r) if r else None

        return self._run(q)

    def accession_holder(self, accession_id: str) -> str | None:
        def q(cur):
            cur.execute("SELECT id FROM files WHERE accession_id = %s", (accession_id,))
            r = cur.fetchone()
            return str(r[0]) if r else None

        return self._run(q)

    def set_ready(self, file_id: str, accession_id: str) -> bool:
        """verified -> ready with the accession; ``Conflict`` if another file holds the accession."""

        def q(cur):
            cur.execute(
                """UPDATE files SET status = 'ready', accession_id = %s, updated_at = now()
                           WHERE id = %s AND status = 'verified'""",
                (accession_id, file_id),
            )
            if cur.rowcount != 1:
                return False
            self._event(cur, file_id, "ready", None, {"accession_id": accession_id})
            return True

        return self._run(q)

    def in_dataset(self, file_id: str) -> bool:
        def q(cur):
            cur.execute("SELECT 1 FROM dataset_files WHERE file_id = %s", (file_id,))
            return cur.fetchone() is not None

        return self._run(q)

    def disable(self, file_id: str, correlation_id: str | None, message: dict) -> bool:
        def q(cur):
            cur.execute(
                """UPDATE files SET status = 'disabled', updated_at = now()
                           WHERE id = %s AND status <> 'disabled'
                           AND NOT EXISTS (SELECT 1 FROM dataset_files WHERE file_id = %s)""",
                (file_id, file_id),
            )
            changed = cur.rowcount == 1
            if changed:
                self._event(cur, file_id, "disabled", correlation_id, message)
            return changed

        return self._run(q)

    def map_dataset(
        self, dataset_id: str, accession_ids: list[str], correlation_id: str | None, message: dict
    ) -> list[str]:
        """Record dataset -> files; returns the accession ids that are not ready files (nothing recorded)."""

        def q(cur):
            cur.execute(
                "SELECT accession_id, id FROM files WHERE accession_id = ANY(%s) AND status = 'ready'",
                (accession_ids,),
            )
            found = {r[0]: str(r[1]) for r in cur.fetchall()}
            missing = [a for a in accession_ids if a not in found]
            if missing:
                return missing
            cur.execute("INSERT INTO datasets (dataset_id) VALUES (%s) ON CONFLICT DO NOTHING", (dataset_id,))
            for acc in accession_ids:
                cur.execute(
                    "INSERT INTO dataset_files VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (dataset_id, found[acc]),
                )
                self._event(cur, found[acc], "mapped", correlation_id, message)
            return []

        return self._run(q)

    def statuses(self, file_ids: list[str]) -> dict[str, str]:
        def q(cur):
            cur.execute("SELECT id, status FROM files WHERE id = ANY(%s::uuid[])", (file_ids,))
            return {str(r[0]): r[1] for r in cur.fetchall()}

        return self._run(q)

    def stale(self, older_than_seconds: int, limit: int) -> list[str]:
        """Files left half-way (submitted/archived) for a while, or verified with an accession waiting."""

        def q(cur):
            cur.execute(
                """SELECT f.id FROM files f WHERE
                     (f.status IN ('submitted', 'archived')
                      AND f.updated_at < now() - make_interval(secs => %s))
                     OR (f.status = 'verified' AND EXISTS (SELECT 1 FROM accessions a
                         WHERE a.submission_user = f.submission_user AND a.filepath = f.filepath))
                   ORDER BY f.updated_at LIMIT %s""",
                (older_than_seconds, limit),
            )
            return [str(r[0]) for r in cur.fetchall()]

        return self._run(q)
