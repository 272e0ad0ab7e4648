"""SPIRE stand-ins: ``python -m devstack.spire server run ...`` and ``... agent run ...``. See README.md."""
