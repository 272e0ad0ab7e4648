"""The steps of EGA ingestion, each small and idempotent, over a database, an inbox and an archive.

    receive   message from CEGA -> a file record (ingest), an accession kept, cancel, mapping
    ingest    submitted -> archived: header to the database, body to the archive (no key needed)
    verify    archived  -> verified: decrypt with the archive key(s), checksums, files.verified
    accession verified  -> ready: apply CEGA's accession id, files.completed
    cancel    any       -> disabled (refused once the file is in a dataset)

A step first reads the file's status and does nothing unless the status is the one it expects,
so running a step twice, or a message delivered twice, changes nothing. Messages to CEGA are
published *before* the status change that they report, so a crash in between repeats the
message (at-least-once) rather than losing it. User errors are reported to CEGA
(``files.error``) and recorded; the step then raises the ``UserError`` for its caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from include.common.progress import ProgressReporter
from include.ega import c4gh
from include.ega.db import Database, FileRecord
from include.ega.errors import Conflict, InvalidMessage, TransientError, UserError
from include.ega.messages import (
    ACCESSION_QUEUE_TYPES,
    FILES_QUEUE_TYPES,
    accession_request_message,
    checksums_dict,
    completion_message,
    parse_incoming,
    user_error_message,
)
from include.ega.storage import Archive, Inbox, new_archive_name

log = logging.getLogger(__name__)

VERIFIED_KEY = "files.verified"
COMPLETED_KEY = "files.completed"
ERROR_KEY = "files.error"


class Publisher(Protocol):
    def __call__(self, routing_key: str, message: dict, correlation_id: str | None) -> None: ...


def _progress(what: str, total: int | None = None) -> ProgressReporter:
    """Bytes done, rate and ETA in the log, at most every 10 seconds."""
    return ProgressReporter(what, bytes_total=total, interval=10.0, emit=log.info)


@dataclass
class Received:
    kind: str
    file_id: str | None = None
    created: bool = False


@dataclass
class BatchResult:
    done: dict[str, str] = field(default_factory=dict)  # file id -> status reached
    user_errors: dict[str, str] = field(default_factory=dict)  # file id -> reason
    transient: dict[str, str] = field(default_factory=dict)  # file id -> error


class Pipeline:
    """:param db: the EGA database
    :param inbox: where users upload (``Inbox``)
    :param archive: where bodies are archived (``Archive``)
    :param private_keys: returns the archive's private key(s), called only by verify
    :param publish: sends a message to CEGA's exchange
    """

    def __init__(
        self,
        db: Database,
        inbox: Inbox | None,
        archive: Archive | None,
        private_keys: Callable[[], list[bytes]] | None,
        publish: Publisher,
    ):
        self.db, self.inbox, self.archive = db, inbox, archive
        self.private_keys, self.publish = private_keys, publish

    # -- incoming messages -----------------------------------------------------------------
    def receive_files_message(self, body: bytes, correlation_id: str | None) -> Received:
        """Record a message of the ``files`` queue; ``InvalidMessage`` means dead-letter it."""
        kind, msg = parse_incoming(body, FILES_QUEUE_TYPES)
        if kind == "ingest":
            uploaded = checksums_dict(msg.get("encrypted_checksums"))
            file_id, created = self.db.register(msg["user"], msg["filepath"], correlation_id, msg, uploaded)
            log.info("ingest request for file %s (new: %s, correlation id %s)", file_id, created, correlation_id)
            return Received(kind, file_id, created)
        if kind == "cancel":
            return Received(kind, self.cancel(msg["user"], msg["filepath"], correlation_id, msg))
        missing = self.db.map_dataset(msg["dataset_id"], msg["accession_ids"], correlation_id, msg)
        if missing:
            raise InvalidMessage(
                f"dataset {msg['dataset_id']}: accession ids not ready in this node: {', '.join(missing)}"
            )
        return Received(kind)

    def receive_accession_message(self, body: bytes, correlation_id: str | None) -> Received:
        """Record an accession from the ``stableIDs`` queue (kept even if the file is not verified yet)."""
        kind, msg = parse_incoming(body, ACCESSION_QUEUE_TYPES)
        self.db.record_accession(
            msg["user"], msg["filepath"], msg["accession_id"], msg["decrypted_checksums"], correlation_id, msg
        )
        return Received(kind, self.db.find_live(msg["user"], msg["filepath"]))

    # -- errors ----------------------------------------------------------------------------
    def fail(self, rec: FileRecord, reason: str) -> None:
        """Report a user error to CEGA, then mark the file as in error."""
        self.publish(ERROR_KEY, user_error_message(rec.user, rec.filepath, reason), rec.correlation_id)
        self.db.set_error(rec.id, reason)
        log.warning("file %s: user error: %s", rec.id, reason)

    def _guard(self, rec: FileRecord, fn: Callable[[], Any], cleanup: Callable[[], None] | None = None) -> Any:
        try:
            return fn()
        except UserError as exc:
            if cleanup:
                cleanup()
            self.fail(rec, exc.reason)
            raise
        except (OSError, ConnectionError) as exc:
            raise TransientError(f"file {rec.id}: {type(exc).__name__}: {exc}") from exc

    # -- steps -----------------------------------------------------------------------------
    def ingest(self, file_id: str) -> str:
        """submitted -> archived. Returns the file's status afterwards."""
        rec = self.db.get(file_id)
        if rec.status != "submitted":
            return rec.status
        uploaded = rec.checksums.get("uploaded", {})
        name = new_archive_name()

        def work():
            with self.inbox.open(rec.user, rec.filepath) as src, self.archive.writer(name, tmp_key=file_id) as out:
                progress = _progress(f"file {file_id} archived")
                res = c4gh.split(src, out, progress=progress, md5="md5" in uploaded)
                for typ, expected in uploaded.items():
                    got = res.file_sha256 if typ == "sha256" else res.file_md5
                    if got != expected.lower():
                        raise UserError(
                            f"The uploaded file's {typ} checksum {got} does not match the "
                            f"encrypted_checksums of the message ({expected}): the upload is "
                            "incomplete or another file was uploaded. Upload it again."
                        )
            return res

        res = self._guard(rec, work)
        if not self.db.set_archived(
            file_id, res.header, self.archive.location, name, res.body_size, res.body_sha256, res.file_sha256
        ):
            self.archive.delete(name)  # another worker won the race; its copy is the one recorded
            return self.db.get(file_id).status
        log.info("file %s archived as %s (%d bytes)", file_id, name, res.body_size)
        return "archived"

    def verify(self, file_id: str) -> str:
        """archived -> verified, publishing files.verified. Returns the status afterwards."""
        rec = self.db.get(file_id)
        if rec.status != "archived":
            return rec.status

        def work():
            keys = c4gh.session_keys(rec.header, self.private_keys())
            checksum = c4gh.session_key_checksum(keys)
            if other := self.db.session_key_in_use(file_id, checksum):
                raise UserError(
                    f"Duplicate upload: this file's encryption (session key) is the same as that "
                    f"of file {other} already archived. Re-encrypt the file before uploading it."
                )
            with self.archive.open(rec.archive_path) as body:
                progress = _progress(f"file {file_id} verified", rec.archive_size)
                res = c4gh.decrypt_body(body, keys, progress=progress)
            return checksum, res

        checksum, res = self._guard(rec, work, cleanup=lambda: self.archive.delete(rec.archive_path))
        archived = rec.checksums.get("archived", {}).get("sha256")
        self.publish(
            VERIFIED_KEY,
            accession_request_message(rec.user, rec.filepath, res.sha256, res.md5),
            rec.correlation_id,
        )
        try:
            self.db.set_verified(file_id, checksum, res.size, res.sha256, res.md5)
        except Conflict:
            return self._guard(
                rec,
                lambda: _raise(
                    UserError(
                        "Duplicate upload: another file with the same encryption (session key) was "
                        "verified at the same time. Re-encrypt the file before uploading it."
                    )
                ),
            )
        log.info("file %s verified: %d bytes of plaintext, archived body sha256 %s", file_id, res.size, archived)
        return self.db.get(file_id).status

    def accession(self, file_id: str) -> str:
        """verified -> ready if CEGA's accession has arrived; returns the status ("verified": waiting)."""
        rec = self.db.get(file_id)
        if rec.status != "verified":
            return rec.status
        acc = self.db.pending_accession(rec.user, rec.filepath)
        if acc is None:
            return "verified"
        accession_id = acc["accession_id"]
        ours = rec.checksums.get("decrypted", {})

        def check():
            theirs = checksums_dict(acc["decrypted_checksums"])
            for typ, value in theirs.items():
                if typ in ours and ours[typ] != value:
                    raise UserError(
                        f"The accession {accession_id} was given for other content: its {typ} "
                        f"checksum {value} differs from the archived file's ({ours[typ]})"
                    )
            holder = self.db.accession_holder(accession_id)
            if holder and holder != file_id:
                raise UserError(f"The accession id {accession_id} is already given to another file ({holder})")

        self._guard(rec, check)
        self.publish(
            COMPLETED_KEY,
            completion_message(rec.user, rec.filepath, ours["sha256"], ours["md5"], accession_id),
            rec.correlation_id,
        )
        try:
            self.db.set_ready(file_id, accession_id)
        except Conflict:
            self._guard(
                rec,
                lambda: _raise(UserError(f"The accession id {accession_id} is already given to another file")),
            )
        return self.db.get(file_id).status

    def cancel(self, user: str, filepath: str, correlation_id: str | None, message: dict) -> str | None:
        """Disable the live file of (user, filepath) and delete its archive copy."""
        file_id = self.db.find_live(user, filepath)
        if file_id is None:
            self.db.log_event(None, "cancel_unknown_file", correlation_id, message)
            return None
        rec = self.db.get(file_id)
        if self.db.in_dataset(file_id):
            reason = (
                f"Cancel refused: the file {filepath!r} is already in a dataset; ask Central EGA to "
                "deprecate the dataset instead"
            )
            self.publish(ERROR_KEY, user_error_message(user, filepath, reason), correlation_id)
            self.db.log_event(file_id, "cancel_refused", correlation_id, message)
            return file_id
        if rec.archive_path and self.archive is not None:
            self.archive.delete(rec.archive_path)
        self.db.disable(file_id, correlation_id, message)
        return file_id

    def process(self, file_ids: list[str], steps: tuple[str, ...] = ("ingest", "verify", "accession")) -> BatchResult:
        """Run ``steps`` for each file; a file's error does not stop the others."""
        result = BatchResult()
        for file_id in file_ids:
            try:
                status = None
                for step in steps:
                    status = getattr(self, step)(file_id)
                    if status in ("error", "disabled"):
                        break
                result.done[file_id] = status
            except UserError as exc:
                result.user_errors[file_id] = exc.reason
            except TransientError as exc:
                log.warning("file %s: transient error: %s", file_id, exc)
                result.transient[file_id] = str(exc)
        return result


def _raise(exc: BaseException):
    raise exc


def drain(pipeline: Pipeline, broker: Any, max_messages: int = 100, stale_after: int = 600) -> list[str]:
    """Record up to ``max_messages`` messages of each incoming queue; return the files to work on.

    The files are those newly or again requested, plus files left half-way for ``stale_after``
    seconds (a crashed run) and verified files whose accession has arrived.
    """
    from include.ega.broker import DrainInterrupted

    s = broker.settings
    file_ids: list[str] = []
    interrupted: DrainInterrupted | None = None
    try:
        results = broker.drain(
            s.files_queue,
            pipeline.receive_files_message,
            max_messages,
            lambda body, reason, cid: _rejected(pipeline, body, reason, cid),
        )
    except DrainInterrupted as exc:  # what was recorded is worked on; the rest is redelivered
        results, interrupted = exc.results, exc
    file_ids += [r.file_id for r in results if r.kind == "ingest" and r.file_id]
    if interrupted is None:
        try:
            file_ids += drain_accessions(pipeline, broker, max_messages)
        except DrainInterrupted as exc:
            file_ids += [r.file_id for r in exc.results if r.file_id]
            interrupted = exc
    file_ids += pipeline.db.stale(stale_after, max_messages)
    if interrupted is not None:
        if not file_ids:
            raise interrupted
        log.warning("draining interrupted (%s); working on the %d file(s) recorded", interrupted, len(file_ids))
    return list(dict.fromkeys(file_ids))


def batches(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), max(1, size))]


def drain_accessions(pipeline: Pipeline, broker: Any, max_messages: int = 1000) -> list[str]:
    """Record the accession messages waiting in ``stableIDs``; return the live files they name."""
    results = broker.drain(
        broker.settings.accession_queue,
        pipeline.receive_accession_message,
        max_messages,
        lambda body, reason, cid: _rejected(pipeline, body, reason, cid),
    )
    return [r.file_id for r in results if r.file_id]


def _rejected(pipeline: Pipeline, body: bytes, reason: str, correlation_id: str | None) -> None:
    """The error record of a dead-lettered message, in the event log."""
    pipeline.db.log_event(
        None,
        "rejected",
        correlation_id,
        {"reason": reason, "body": body.decode("utf-8", errors="replace")[:10000]},
    )
