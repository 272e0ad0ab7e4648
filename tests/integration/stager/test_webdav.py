"""The credential check against a real WebDAV server (WsgiDAV with basic auth)."""

from __future__ import annotations

import pytest

from include.stager.errors import TransientError, UserError
from include.stager.webdav import check_credential


@pytest.fixture(scope="session")
def webdav_url(devstack):
    v = devstack.start("webdav")
    return f"http://127.0.0.1:{v['SDP_WEBDAV_PORT']}/"


def test_a_good_credential_passes(webdav_url):
    check_credential(webdav_url, "alice", "alice-secret")


def test_a_wrong_password_is_rejected_with_a_clear_message(webdav_url):
    with pytest.raises(UserError, match=r"rejected the credential of 'alice' \(HTTP 401\)"):
        check_credential(webdav_url, "alice", "nope")


def test_an_unreachable_server_is_transient():
    with pytest.raises(TransientError):
        check_credential("http://127.0.0.1:9/", "alice", "x", timeout=2)
