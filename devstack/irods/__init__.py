"""An iRODS stand-in: the part of the iRODS 4.3 protocol that python-irodsclient needs.

Written from the protocol (XML packing instructions over a length-prefixed TCP framing) and iRODS's own
source (cited where each rule is implemented), not from the client library: nothing here imports
``irods``, ``include`` or ``plugins``.

Supported: startup pack (with or without client-server negotiation, TCP only), native
authentication through the 4.3 JSON ``AUTHENTICATION_APN`` flow, GenQuery (strict ACLs as shipped,
joins of objects, collections, access rows, AVUs, users and groups; ordering, aggregates, paging),
collections (create, remove, trash, rename), data objects (open/create/read/write/seek/close, unlink
with trash, rename, copy, truncate, touch, register), checksums (``sha2:`` base64 SHA-256), access
control as iRODS checks it (own rows only, inheritance at creation, admin mode), AVUs, users, groups
and passwords, iRODS 4.2.9+ logical locking for parallel streams. What remains different from a real
iRODS is listed in docs/stager-standins.md.
"""
