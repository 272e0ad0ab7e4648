from __future__ import annotations

import pytest

from tests.unit.include.ega.support import make_keypair


@pytest.fixture(scope="session")
def ega_keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("ega-keys")
    return {name: make_keypair(d, name) for name in ("node", "user", "other", "old")}
