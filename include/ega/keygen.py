"""Create the node's Crypt4GH key pair if it is missing: ``python -m include.ega.keygen DIR``.

Writes ``DIR/lega.sec`` (locked with the passphrase from ``$LEGA_KEY_PASSPHRASE``, mode 0600)
and ``DIR/lega.pub``. Existing keys are kept, so this is safe to run on every ``make up``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def ensure_keypair(directory: str | os.PathLike, passphrase: str, name: str = "lega") -> tuple[Path, Path]:
    from crypt4gh.keys import c4gh

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    sec, pub = d / f"{name}.sec", d / f"{name}.pub"
    if not (sec.exists() and pub.exists()):
        tmp_sec, tmp_pub = d / f".{name}.sec.tmp", d / f".{name}.pub.tmp"
        for p in (tmp_sec, tmp_pub):
            p.unlink(missing_ok=True)
        c4gh.generate(str(tmp_sec), str(tmp_pub), passphrase=passphrase.encode(), comment=name.encode())
        os.chmod(tmp_sec, 0o600)
        os.replace(tmp_pub, pub)
        os.replace(tmp_sec, sec)
    return sec, pub


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    passphrase = os.environ.get("LEGA_KEY_PASSPHRASE")
    if not passphrase:
        print("error: set LEGA_KEY_PASSPHRASE to the passphrase that locks the node's private key "
              "(the lega_keys connection's password)", file=sys.stderr)
        return 2
    sec, pub = ensure_keypair(argv[0], passphrase)
    print(f"node key pair: {sec} {pub}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
