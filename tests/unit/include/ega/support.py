"""Helpers of the EGA tests: key pairs and Crypt4GH files (library and CLI)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from crypt4gh import lib
from crypt4gh.keys import c4gh as c4gh_keys
from nacl.bindings import crypto_scalarmult_base

ROOT = Path(__file__).resolve().parents[4]
BIN = Path(sys.executable).parent
CRYPT4GH = str(BIN / "crypt4gh")
PASSPHRASE = "test-passphrase"


@dataclass
class KeyPair:
    sec_path: Path
    pub_path: Path
    seckey: bytes
    pubkey: bytes
    passphrase: str | None


def make_keypair(directory: Path, name: str, passphrase: str | None = PASSPHRASE) -> KeyPair:
    directory.mkdir(parents=True, exist_ok=True)
    sec, pub = directory / f"{name}.sec", directory / f"{name}.pub"
    c4gh_keys.generate(str(sec), str(pub), passphrase=(passphrase or "").encode(), comment=name.encode())
    from include.ega.c4gh import load_private_key

    sk = load_private_key(sec.read_text(), passphrase)
    return KeyPair(sec, pub, sk, crypto_scalarmult_base(sk), passphrase)


def encrypt_bytes(plaintext: bytes, sender: KeyPair, *recipients: KeyPair) -> bytes:
    out = io.BytesIO()
    keys = [(0, sender.seckey, r.pubkey) for r in recipients]
    lib.encrypt(keys, io.BytesIO(plaintext), out)
    return out.getvalue()


def cli_encrypt(src: Path, dst: Path, sender: KeyPair, *recipients: KeyPair) -> None:
    args = [CRYPT4GH, "encrypt", "--sk", str(sender.sec_path)]
    for r in recipients:
        args += ["--recipient_pk", str(r.pub_path)]
    env = {**os.environ, "C4GH_PASSPHRASE": sender.passphrase or ""}
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        subprocess.run(args, stdin=fin, stdout=fout, env=env, check=True)


def cli_decrypt(src: Path, dst: Path, recipient: KeyPair) -> None:
    env = {**os.environ, "C4GH_PASSPHRASE": recipient.passphrase or ""}
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        subprocess.run(
            [CRYPT4GH, "decrypt", "--sk", str(recipient.sec_path)],
            stdin=fin,
            stdout=fout,
            env=env,
            check=True,
        )
