"""Custodial actor keys, encrypted at rest, and API keys, stored hashed.

Actor keys are sealed with AES-256-GCM under a key derived once per process from the passphrase
(scrypt, salt in the data dir): deriving per key would cost a scrypt run per signature.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from eth_account import Account
from eth_account.signers.local import LocalAccount

from tracer.exceptions import ConfigurationError

log = logging.getLogger(__name__)

_SALT_FILE = "keystore-salt"
_PASSPHRASE_FILE = "key-passphrase"


def write_secret_file(path: Path, content: str) -> None:
    """Writes ``content`` to ``path`` readable by its owner only (mode 0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.replace(tmp, path)


def resolve_passphrase(data_dir: Path, configured: str | None) -> str:
    """The configured passphrase, or a generated development one kept in the data dir (with a warning)."""
    if configured:
        return configured
    path = data_dir / _PASSPHRASE_FILE
    if not path.exists():
        write_secret_file(path, secrets.token_urlsafe(32))
        log.warning(
            "TRACER_KEY_PASSPHRASE is not set: generated a development passphrase in %s. "
            "Set TRACER_KEY_PASSPHRASE in production.",
            path,
        )
    return path.read_text().strip()


class KeyStore:
    """Seals and opens custodial private keys with a passphrase-derived AES-GCM key."""

    def __init__(self, *, data_dir: Path, passphrase: str) -> None:
        salt_path = data_dir / _SALT_FILE
        if not salt_path.exists():
            write_secret_file(salt_path, secrets.token_hex(16))
        salt = bytes.fromhex(salt_path.read_text().strip())
        key = Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(passphrase.encode())
        self._aead = AESGCM(key)
        self._opened: dict[str, LocalAccount] = {}

    def new_account(self) -> tuple[LocalAccount, str]:
        """A fresh account and its sealed key."""
        account: LocalAccount = Account.create()
        return account, self.seal(account.key)

    def seal(self, private_key: bytes) -> str:
        """The private key encrypted and base64-encoded (nonce || ciphertext)."""
        nonce = secrets.token_bytes(12)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, private_key, None)).decode()

    def open(self, sealed: str) -> LocalAccount:
        """The account behind a sealed key; raises ConfigurationError if the passphrase is wrong."""
        account = self._opened.get(sealed)
        if account is None:
            raw = base64.b64decode(sealed)
            try:
                private_key = self._aead.decrypt(raw[:12], raw[12:], None)
            except InvalidTag as exc:
                raise ConfigurationError(
                    "cannot decrypt an actor key: TRACER_KEY_PASSPHRASE differs from the one the keys were sealed with"
                ) from exc
            account = Account.from_key(private_key)
            self._opened[sealed] = account
        return account


def new_api_key() -> str:
    """A fresh random API key."""
    return "trk_" + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    """The stored form of an API key (SHA-256 hex: keys are random, so no slow hash is needed)."""
    return hashlib.sha256(api_key.encode()).hexdigest()
