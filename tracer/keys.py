"""Custodial actor keys, encrypted at rest, and API keys, stored as keyed hashes.

Actor keys are sealed with AES-256-GCM under a key derived once per process from the passphrase
(scrypt, salt in the data dir): deriving per key would cost a scrypt run per signature.

API keys are stored as HMAC-SHA256 under a secret kept in the data dir. Keys are random, so no slow
hash is needed; the secret is there so that an attacker cannot compute the stored form of a key they
guess, and so cannot steer the database's index lookup to learn anything from its timing.

Every secret file in the data dir is readable by its owner only (0600, the directory 0700).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
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
_API_KEY_SECRET_FILE = "api-key-secret"
SECRET_FILE_MODE = 0o600
DATA_DIR_MODE = 0o700


def write_secret_file(path: Path, content: str) -> None:
    """Writes ``content`` to ``path`` readable by its owner only (mode 0600), atomically."""
    path.parent.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SECRET_FILE_MODE)
    os.fchmod(fd, SECRET_FILE_MODE)  # a stale .tmp left by a crash keeps its old mode through O_CREAT
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.replace(tmp, path)


def lock_down(data_dir: Path, secret_files: tuple[str, ...] = ()) -> None:
    """Makes ``data_dir`` (created if missing) 0700 and its key files 0600, the ones named here and the store's.

    Data dirs made before this rule, or restored from a backup with looser modes, are tightened at start-up.
    """
    data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    _tighten(data_dir, DATA_DIR_MODE)
    for name in (_SALT_FILE, _PASSPHRASE_FILE, _API_KEY_SECRET_FILE, *secret_files):
        path = data_dir / name
        if path.exists():
            _tighten(path, SECRET_FILE_MODE)


def _tighten(path: Path, mode: int) -> None:
    was = path.stat().st_mode & 0o777
    if was != mode:
        try:
            path.chmod(mode)
        except PermissionError:  # another user's (a mounted volume): say so, but do not refuse to start
            log.warning("%s is mode %o and not ours to change; make it %o (owner only)", path, was, mode)
        else:
            log.warning("%s was mode %o; made it %o (owner only)", path, was, mode)


def resolve_passphrase(data_dir: Path, configured: str | None, *, production: bool = False) -> str:
    """The configured passphrase, or a generated development one kept in the data dir (with a warning).

    In production (``TRACER_ENV=production``) raises ConfigurationError instead of generating one, and for a
    configured passphrase that is the generated development one.
    """
    path = data_dir / _PASSPHRASE_FILE
    if production:
        if not configured:
            raise ConfigurationError(
                "TRACER_ENV=production, but TRACER_KEY_PASSPHRASE is not set: set TRACER_KEY_PASSPHRASE to the "
                "passphrase that encrypts the actor keys (the generated development passphrase is refused)"
            )
        if path.exists() and hmac.compare_digest(configured.encode(), path.read_text().strip().encode()):
            raise ConfigurationError(
                f"TRACER_ENV=production, but TRACER_KEY_PASSPHRASE is the generated development passphrase of "
                f"{path}: set TRACER_KEY_PASSPHRASE to a passphrase of your own"
            )
    if configured:
        return configured
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
        # Not derived from the passphrase: API keys must keep working when the passphrase is wrong or changes.
        secret_path = data_dir / _API_KEY_SECRET_FILE
        if not secret_path.exists():
            write_secret_file(secret_path, secrets.token_hex(32))
        self._api_key_secret = bytes.fromhex(secret_path.read_text().strip())

    def api_key_digest(self, api_key: str) -> str:
        """The stored form of an API key: HMAC-SHA256 under this deployment's secret, 64 hex digits."""
        return hmac.new(self._api_key_secret, api_key.encode(), hashlib.sha256).hexdigest()

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


def legacy_api_key_hash(api_key: str) -> str:
    """The stored form of an API key before keyed hashes (plain SHA-256 hex); upgraded on the key's next use."""
    return hashlib.sha256(api_key.encode()).hexdigest()
