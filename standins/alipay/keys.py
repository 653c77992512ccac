"""Keys for the Alipay double, made once under <run_dir>/doubles/alipay/ and reused.

    app_private_key.pem / app_public_key.pem        the merchant app's pair (ours)
    alipay_private_key.pem / alipay_public_key.pem  the pretend Alipay's pair
    app_id                                          the app's id at the double

Our connector gets the app private key and the Alipay public key (the environment
that ensure_keys returns); the double reads its own private key and our app public
key from the same folder (load_double_keys).
"""

from __future__ import annotations

import fcntl
import functools
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

GATEWAY_PATH = "/doubles/alipay/gateway.do"
KEY_BITS = 2048
FILES = ("app_private_key.pem", "app_public_key.pem", "alipay_private_key.pem",
         "alipay_public_key.pem", "app_id")


def key_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "doubles" / "alipay"


def ensure_keys(run_dir: Path, public_base_url: str) -> dict[str, str]:
    """Make the keys if missing (a lock keeps two starters from racing), and return
    the ALIPAY_* settings that point our connector at them and at the double."""
    folder = key_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all((folder / name).exists() for name in FILES):
            _write_pair(folder, "app")
            _write_pair(folder, "alipay")
            # Alipay app ids are 16 digits starting with the year the app was made.
            _write(folder / "app_id", ("2021" + "".join(
                secrets.choice("0123456789") for _ in range(12))).encode())
    return {
        "ALIPAY_APP_ID": (folder / "app_id").read_text().strip(),
        "ALIPAY_APP_PRIVATE_KEY_FILE": str(folder / "app_private_key.pem"),
        "ALIPAY_PUBLIC_KEY_FILE": str(folder / "alipay_public_key.pem"),
        "ALIPAY_GATEWAY_URL": public_base_url.rstrip("/") + GATEWAY_PATH,
    }


@dataclass(frozen=True)
class DoubleKeys:
    app_id: str
    alipay_private_key: RSAPrivateKey  # signs answers and notifications
    app_public_key: RSAPublicKey  # verifies the merchant's requests


@functools.lru_cache(maxsize=8)
def load_double_keys(run_dir: Path) -> DoubleKeys:
    """Read once per process (ensure_keys never replaces keys that exist)."""
    folder = key_dir(run_dir)
    private = serialization.load_pem_private_key(
        (folder / "alipay_private_key.pem").read_bytes(), password=None)
    public = serialization.load_pem_public_key((folder / "app_public_key.pem").read_bytes())
    assert isinstance(private, RSAPrivateKey) and isinstance(public, RSAPublicKey)
    return DoubleKeys((folder / "app_id").read_text().strip(), private, public)


def _write_pair(folder: Path, name: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    _write(folder / f"{name}_private_key.pem", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    _write(folder / f"{name}_public_key.pem", key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def _write(path: Path, data: bytes) -> None:
    """Whole or not at all (a reader never sees half a key); private keys owner-only."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(temporary, path)
