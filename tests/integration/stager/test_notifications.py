"""E-mail of job outcomes through the SMTP provider's notifier, against a real SMTP server."""

from __future__ import annotations

import json

import httpx
import pytest

from sensitive_data.notifiers.stager import StagerNotifier


@pytest.fixture
def mailbox(devstack, monkeypatch):
    v = devstack.start("smtp")
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": int(v["SDP_SMTP_PORT"]),
         "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "stager@localhost",
                   "retry_limit": 0}}))
    monkeypatch.setenv("SDP_STAGER_ADMINS", "admin1@example.org,admin2@example.org")
    base = f"http://127.0.0.1:{v['SDP_SMTP_HTTP_PORT']}"
    httpx.delete(f"{base}/messages")

    def messages():
        return httpx.get(f"{base}/messages").json()
    return messages


def context(**conf):
    params = {"title": "MRI session 7", "stagerUserEmail": "alice@example.org", "drPass": "c2VjcmV0", **conf}
    return {"params": params, "run_id": "stager__1"}


def test_completion_goes_to_the_submitter(mailbox):
    StagerNotifier(failed=False).notify(context())
    (mail,) = mailbox()
    assert mail["subject"] == "[OK] MRI session 7 completed"
    assert mail["to"] == "alice@example.org" and mail["cc"] == ""


def test_failure_alert_copies_the_admins(mailbox):
    StagerNotifier(failed=True).notify(context())
    (mail,) = mailbox()
    assert mail["subject"] == "[ALERT] MRI session 7 failed"
    assert mail["to"] == "alice@example.org"
    assert mail["cc"] == "admin1@example.org, admin2@example.org"
    everyone = {"alice@example.org", "admin1@example.org", "admin2@example.org"}
    assert set(mail["envelope_to"].split(", ")) == everyone


def test_admins_receive_it_when_the_user_gave_no_address(mailbox):
    StagerNotifier(failed=True).notify(context(stagerUserEmail=""))
    (mail,) = mailbox()
    assert mail["to"] == "admin1@example.org, admin2@example.org"


def test_the_mail_never_contains_drpass(mailbox, devstack):
    StagerNotifier(failed=True).notify(context())
    (mail,) = mailbox()
    raw = httpx.get(f"http://127.0.0.1:{devstack.vars['SDP_SMTP_HTTP_PORT']}/messages/{mail['id']}").text
    assert "c2VjcmV0" not in raw and "MRI session 7" in raw


def test_the_alert_says_what_went_wrong(mailbox, devstack):
    import email
    import email.policy

    class TI:
        def xcom_pull(self, task_ids, key):
            return "permission denied: /project/x" if task_ids == "transfer" else None

    StagerNotifier(failed=True, error_tasks=("transfer", "validate")).notify({**context(), "ti": TI()})
    (mail,) = mailbox()
    raw = httpx.get(f"http://127.0.0.1:{devstack.vars['SDP_SMTP_HTTP_PORT']}/messages/{mail['id']}").text
    body = email.message_from_string(raw, policy=email.policy.default).get_body(("html",)).get_content()
    assert "permission denied: /project/x" in body


def _raw(devstack, mail) -> str:
    return httpx.get(f"http://127.0.0.1:{devstack.vars['SDP_SMTP_HTTP_PORT']}/messages/{mail['id']}").text


@pytest.mark.parametrize("title", ["sub-01\r\nBcc: evil@example.org", "a\nX-Injected: 1", "x\u2028y\rz\x00"])
def test_a_title_with_line_breaks_still_alerts_and_injects_no_header(mailbox, devstack, title):
    import email
    import email.policy

    StagerNotifier(failed=True).notify(context(title=title))
    (mail,) = mailbox()
    assert mail["subject"].startswith("[ALERT] ") and mail["subject"].endswith(" failed")
    assert "\n" not in mail["subject"] and "\r" not in mail["subject"]
    assert "evil@example.org" not in mail["envelope_to"]
    msg = email.message_from_string(_raw(devstack, mail), policy=email.policy.default)
    assert msg["Bcc"] is None and msg["X-Injected"] is None
    assert set(mail["envelope_to"].split(", ")) == {"alice@example.org", "admin1@example.org", "admin2@example.org"}


def test_a_non_ascii_title_is_encoded_not_lost(mailbox, devstack):
    StagerNotifier(failed=True).notify(context(title="Grüße ✓ sessie"))
    (mail,) = mailbox()
    assert mail["subject"] == "[ALERT] Grüße ✓ sessie failed"
    assert "=?utf-8?" in _raw(devstack, mail).split("\n\n", 1)[0].lower()  # RFC 2047 in the raw header


@pytest.mark.parametrize("address", ["alice@example.org, evil@example.org", "alice@example.org\r\nCc: evil@x.org",
                                     "Alice <alice@example.org>", "not an address", "ålice@example.org"])
def test_an_invalid_address_goes_to_the_admins_instead(mailbox, devstack, address):
    StagerNotifier(failed=True).notify(context(stagerUserEmail=address))
    (mail,) = mailbox()
    assert set(mail["envelope_to"].split(", ")) == {"admin1@example.org", "admin2@example.org"}
    assert mail["subject"] == "[ALERT] MRI session 7 failed"


def test_a_very_long_title_is_cut(mailbox):
    StagerNotifier(failed=False).notify(context(title="x" * 5000))
    (mail,) = mailbox()
    assert mail["subject"].startswith("[OK] xxx") and len(mail["subject"]) < 200
