"""An iRODS stand-in: the part of the iRODS 4.3 protocol that python-irodsclient needs.

Written from the protocol (XML packing instructions over a length-prefixed TCP framing), not
from the client library: nothing here imports ``irods``, ``include`` or ``plugins``.

Supported: startup pack (with or without client-server negotiation, TCP only), native
authentication through the 4.3 JSON ``AUTHENTICATION_APN`` flow, GenQuery over collections and
data objects (``=``, ``<>``, ``like``, ``not like``, ``in``, comparisons; paging with continueInx),
collection create/remove, data object open/create/read/write/seek/close/unlink, checksums
(``sha2:`` base64 SHA-256, registered on request), overwrite rules, permissions (read / write /
own, inherited from ancestor collections; ``rodsadmin`` may do anything).
Single-stream only: no parallel transfer port (clients must use ``num_threads=0``).
"""
