"""The EGA pipeline over real PostgreSQL and RabbitMQ: happy path, bad input, idempotency."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from include.ega.errors import UserError

pytestmark = pytest.mark.integration

U = "alice.user"


def errors_for(node, filepath):
    return [m for m in node.cega.messages("files.error") if m["body"]["filepath"] == filepath]


def assert_no_temporary_files(node):
    assert not [n for n in node.archive_files() if n.startswith(".tmp")]


def test_file_reaches_ready_and_correlation_id_follows_it(node):
    plain = b"genome " * 10000
    node.upload(U, "run1/sample.c4gh", plain)
    cid = node.cega.trigger(U, "run1/sample.c4gh")
    node.run()
    [rec] = node.file(U, "run1/sample.c4gh")
    assert rec.status == "ready"
    assert rec.accession_id.startswith("EGAF")
    assert rec.checksums["decrypted"] == {
        "sha256": hashlib.sha256(plain).hexdigest(),
        "md5": hashlib.md5(plain).hexdigest(),
    }
    assert rec.decrypted_size == len(plain)
    assert node.archive_files() == [rec.archive_path]
    verified = node.cega.messages("files.verified")
    completed = node.cega.messages("files.completed")
    assert [m["correlation_id"] for m in verified] == [cid]
    assert [m["correlation_id"] for m in completed] == [cid]
    assert completed[0]["body"]["accession_id"] == rec.accession_id
    events = [e["event"] for e in node.events(rec.id)]
    assert events == ["submitted", "archived", "verified", "accession_received", "ready"]
    assert node.events(rec.id)[0]["message"]["filepath"] == "run1/sample.c4gh"


def test_duplicate_trigger_makes_no_duplicate_rows(node):
    node.upload(U, "a.c4gh", b"x" * 1000)
    node.cega.trigger(U, "a.c4gh")
    node.cega.trigger(U, "a.c4gh")
    node.run()
    node.cega.trigger(U, "a.c4gh")  # once more after ready: nothing happens
    node.run()
    [rec] = node.file(U, "a.c4gh")
    assert rec.status == "ready"
    assert len(node.cega.messages("files.completed")) == 1
    assert len(node.archive_files()) == 1
    assert [e["event"] for e in node.events(rec.id)].count("resubmitted") == 2


def test_every_step_is_idempotent(node):
    node.upload(U, "b.c4gh", b"y" * 100)
    node.cega.trigger(U, "b.c4gh")
    [fid] = node.drain()
    p = node.pipeline
    assert p.ingest(fid) == "archived" and p.ingest(fid) == "archived"
    assert p.verify(fid) == "verified" and p.verify(fid) == "verified"
    assert p.accession(fid) == "verified"  # no accession yet: keeps waiting
    node.cega.answer_verified()
    node.drain()
    assert p.accession(fid) == "ready" and p.accession(fid) == "ready"
    assert len(node.archive_files()) == 1
    assert len(node.cega.messages("files.verified")) == 1
    assert len(node.cega.messages("files.completed")) == 1


@pytest.mark.parametrize(
    "case",
    [
        "not_crypt4gh",
        "another_key",
        "flipped_byte",
        "truncated",
        "wrong_checksum",
        "missing",
        "dotdot",
        "absolute",
    ],
)
def test_bad_input_is_reported_to_cega(node, case):
    path = f"{case}.c4gh"
    extra = {}
    expect_reason = {
        "not_crypt4gh": "Not a Crypt4GH file",
        "another_key": "not encrypted for this node",
        "flipped_byte": "MAC failure",
        "truncated": "MAC failure|truncated",
        "wrong_checksum": "checksum",
        "missing": "not found",
        "dotdot": "'..' is not allowed",
        "absolute": "absolute paths",
    }[case]
    plain = b"z" * 150000
    if case == "not_crypt4gh":
        node.upload(U, path, b"plain text pretending to be encrypted", encrypt=False)
    elif case == "another_key":
        node.upload(U, path, plain, recipients=[node.keys["other"]])
    elif case == "flipped_byte":
        data = bytearray(node.upload(U, path, plain))
        data[-100] ^= 0x01
        node.upload(U, path, bytes(data), encrypt=False)
    elif case == "truncated":
        data = node.upload(U, path, plain)
        node.upload(U, path, data[: len(data) // 2], encrypt=False)
    elif case == "wrong_checksum":
        node.upload(U, path, plain)
        extra = {"encrypted_checksums": [{"type": "sha256", "value": "0" * 64}]}
    elif case == "dotdot":
        node.upload("bob.user", "x.c4gh", plain)
        path = "../bob.user/x.c4gh"
    elif case == "absolute":
        node.upload(U, "abs.c4gh", plain)
        path = str(node.inbox_dir / U / "abs.c4gh")
    cid = node.cega.trigger(U, path, **extra)
    [res] = node.run(rounds=1)
    [rec] = node.file(U, path)
    assert rec.status == "error"
    assert rec.id in res.user_errors
    [err] = errors_for(node, path)
    assert err["correlation_id"] == cid
    assert err["body"]["user"] == U
    assert re.search(expect_reason, err["body"]["reason"]), err["body"]["reason"]
    assert node.cega.messages("files.verified") == []
    assert node.archive_files() == []  # nothing half-written, no copy of a rejected file
    assert [e["event"] for e in node.events(rec.id)][-1] == "error"
    # a second run changes nothing and sends nothing more
    node.run(rounds=1)
    assert len(errors_for(node, path)) == 1


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"{this is not json", "not JSON"),
        (
            json.dumps({"type": "reingest-all", "user": U, "filepath": "a.c4gh"}).encode(),
            "unknown message type",
        ),
        (json.dumps({"type": "ingest", "user": U}).encode(), "filepath"),
    ],
)
def test_invalid_messages_go_to_the_dead_letter_queue(node, body, reason):
    cid = node.cega.send(node.cega.s.files_queue, body)
    assert node.drain() == []
    [dead] = node.cega.dead_letters()
    assert dead["correlation_id"] == cid
    assert reason in dead["body"]["reason"]
    assert dead["body"]["body"] == body.decode()
    assert dead["body"]["source_queue"] == node.cega.s.files_queue
    [(event, message)] = node.sql("SELECT event, message FROM file_events WHERE correlation_id = %s", cid)
    assert event == "rejected" and reason in message["reason"]
    assert node.drain() == []  # acknowledged: not redelivered
    assert node.sql("SELECT count(*) FROM files") == [(0,)]


def test_reused_session_key_is_a_duplicate(node):
    data = node.upload(U, "first.c4gh", b"same upload" * 1000)
    node.upload(U, "copy.c4gh", data, encrypt=False)
    node.cega.trigger(U, "first.c4gh")
    node.run()
    node.cega.trigger(U, "copy.c4gh")
    node.run()
    assert node.file(U, "first.c4gh")[0].status == "ready"
    [copy] = node.file(U, "copy.c4gh")
    assert copy.status == "error" and "Duplicate upload" in copy.error_reason
    assert "Duplicate upload" in errors_for(node, "copy.c4gh")[0]["body"]["reason"]
    assert len(node.archive_files()) == 1


def test_duplicate_accession_id_is_an_error(node):
    node.upload(U, "one.c4gh", b"1" * 100)
    node.upload(U, "two.c4gh", b"2" * 100)
    node.cega.trigger(U, "one.c4gh")
    node.cega.trigger(U, "two.c4gh")
    ids = node.drain()
    node.pipeline.process(ids, ("ingest", "verify"))
    node.cega.answer_verified(accession_of=lambda user, fp: "EGAF00000000001")
    res = node.pipeline.process(node.drain(), ("accession",))
    statuses = sorted(r.status for r in node.file(U, "one.c4gh") + node.file(U, "two.c4gh"))
    assert statuses == ["error", "ready"]
    assert len(res.user_errors) == 1
    assert "already given to another file" in list(res.user_errors.values())[0]
    assert len(node.cega.messages("files.error")) == 1
    assert node.sql("SELECT count(*) FROM files WHERE accession_id = 'EGAF00000000001'") == [(1,)]


def test_accession_before_verify_is_kept(node):
    plain = b"early" * 100
    node.upload(U, "early.c4gh", plain)
    node.cega.trigger(U, "early.c4gh")
    [fid] = node.drain()
    node.pipeline.ingest(fid)
    sums = [{"type": "sha256", "value": hashlib.sha256(plain).hexdigest()}]
    node.cega.accession(U, "early.c4gh", "EGAF00000000777", sums)
    assert node.drain() == [fid]  # recorded, acknowledged
    assert node.pipeline.accession(fid) == "archived"  # not verified yet: nothing happens
    assert node.pipeline.verify(fid) == "verified"
    assert node.pipeline.accession(fid) == "ready"
    assert node.db.get(fid).accession_id == "EGAF00000000777"


def test_accession_for_other_content_is_refused(node):
    node.upload(U, "c.c4gh", b"content")
    node.cega.trigger(U, "c.c4gh")
    [fid] = node.drain()
    node.pipeline.process([fid], ("ingest", "verify"))
    node.cega.accession(U, "c.c4gh", "EGAF00000000778", [{"type": "sha256", "value": "a" * 64}])
    node.drain()
    with pytest.raises(UserError, match="other content"):
        node.pipeline.accession(fid)
    assert node.db.get(fid).status == "error"


def test_cancel_then_mapping_refuses_cancel(node):
    node.upload(U, "c1.c4gh", b"c1")
    node.upload(U, "c2.c4gh", b"c2")
    node.cega.trigger(U, "c1.c4gh")
    node.cega.trigger(U, "c2.c4gh")
    node.run()
    assert {r.status for r in node.file(U, "c1.c4gh") + node.file(U, "c2.c4gh")} == {"ready"}
    c1 = node.file(U, "c1.c4gh")[0]
    c2 = node.file(U, "c2.c4gh")[0]
    # cancel c1: disabled, archive copy deleted
    node.cega.trigger(U, "c1.c4gh", kind="cancel")
    node.drain()
    assert node.db.get(c1.id).status == "disabled"
    assert node.archive_files() == [c2.archive_path]
    # map c2 into a dataset; a mapping naming a disabled file is dead-lettered
    node.cega.send(
        node.cega.s.files_queue,
        {"type": "mapping", "dataset_id": "EGAD00000000001", "accession_ids": [c2.accession_id]},
    )
    node.cega.send(
        node.cega.s.files_queue,
        {"type": "mapping", "dataset_id": "EGAD00000000002", "accession_ids": [c1.accession_id]},
    )
    node.drain()
    assert node.dataset_files("EGAD00000000001") == [c2.id]
    assert node.dataset_files("EGAD00000000002") == []
    assert "not ready" in node.cega.dead_letters()[0]["body"]["reason"]
    # cancel refused once in a dataset
    node.cega.trigger(U, "c2.c4gh", kind="cancel")
    node.drain()
    assert node.db.get(c2.id).status == "ready"
    assert "refused" in errors_for(node, "c2.c4gh")[0]["body"]["reason"]
    assert c2.archive_path in node.archive_files()


def test_resubmission_after_error_is_a_new_file(node):
    node.upload(U, "retry.c4gh", b"bad", encrypt=False)
    node.cega.trigger(U, "retry.c4gh")
    node.run(rounds=1)
    node.upload(U, "retry.c4gh", b"good content")
    node.cega.trigger(U, "retry.c4gh")
    node.run()
    assert [r.status for r in node.file(U, "retry.c4gh")] == ["error", "ready"]


def test_stored_header_and_archive_rebuild_the_upload(node):
    data = node.upload(U, "rebuild.c4gh", b"r" * 200000)
    node.cega.trigger(U, "rebuild.c4gh")
    node.run()
    [rec] = node.file(U, "rebuild.c4gh")
    assert rec.header + (node.archive_dir / rec.archive_path).read_bytes() == data
    assert rec.checksums["uploaded"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert rec.checksums["archived"]["sha256"] == hashlib.sha256(data[len(rec.header) :]).hexdigest()
