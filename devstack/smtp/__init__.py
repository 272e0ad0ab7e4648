"""An SMTP catcher for tests and the local stack: aiosmtpd stores every message as a file under its
state directory and serves them over HTTP as JSON.

``GET /messages`` -> ``[{"id", "from", "to", "cc", "subject", "date"}]`` (oldest first);
``GET /messages/<id>`` -> the raw message; ``DELETE /messages`` removes them all.
"""
