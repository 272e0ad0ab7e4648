"""Check a data-repository credential with a WebDAV PROPFIND (Depth: 0) before accepting a job."""

from __future__ import annotations

import base64
import http.client
import urllib.error
import urllib.request

from include.stager.errors import TransientError, UserError

PROPFIND_BODY = (b'<?xml version="1.0" encoding="utf-8"?>'
                 b'<propfind xmlns="DAV:"><prop><resourcetype/></prop></propfind>')


def check_credential(url: str, user: str, password: str, timeout: float = 15) -> None:
    """Raise :class:`UserError` when the repository's WebDAV answers 401/403 for ``user``."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(url, data=PROPFIND_BODY, method="PROPFIND",  # noqa: S310 - URL from a connection
                                 headers={"Depth": "0", "Authorization": f"Basic {token}",
                                          "Content-Type": "application/xml"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise TransientError(f"cannot reach the repository's WebDAV to check the credential: {exc}") from None
    if status == 401:
        raise UserError(f"the data repository rejected the credential of {user!r} (HTTP 401); "
                        "check drUser and the password")
    if status == 403:
        raise UserError(f"the data repository refused access for {user!r} (HTTP 403)")
    if status >= 400:
        raise TransientError(f"the repository's WebDAV answered HTTP {status} to the credential check")
