"""HashiCorp Vault stand-in (``python -m devstack.vault``). See docs/hpcs-standins.md."""
