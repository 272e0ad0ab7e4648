"""The repository's WebDAV door: a real WsgiDAV server with basic auth, users from the iRODS stand-in's
users file, so that a job's credential can be checked with PROPFIND."""
