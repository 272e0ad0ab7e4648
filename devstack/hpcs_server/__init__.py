"""CSC HPCS server stand-in (``python -m devstack.hpcs_server``). See docs/hpcs-standins.md."""
