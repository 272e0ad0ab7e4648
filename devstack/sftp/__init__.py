"""Generic SFTP server stand-in (``python -m devstack.sftp``): key auth only, confined to a root."""
