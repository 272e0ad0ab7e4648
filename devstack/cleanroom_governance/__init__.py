"""Clean room governance service (CGS) stand-in for the confidential clean room (see server.py)."""
