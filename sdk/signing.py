"""Signed bundles: a detached Ed25519 signature over the exact bytes of ``manifest.json``.

The manifest holds the sha256 of every file the SDK reads, so one signature over it covers the whole bundle.
``ssp convert keygen`` makes a key pair, ``ssp convert sign BUNDLE --key KEY`` writes ``manifest.json.sig``,
and ``Bundle.open(root, verify_key=PUB)`` (or ``$SSP_BUNDLE_PUBKEY``) refuses a bundle whose signature is
missing or does not verify. The crypto is the ``cryptography`` package's (never hand-rolled); it is imported
only when a key is used, so unsigned bundles work without it.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Any

from .errors import BundleError, SDKError
from .fsio import atomic_write_bytes

__all__ = [
    "SIGNATURE",
    "PUBKEY_ENV",
    "generate_keypair",
    "load_public_key",
    "load_private_key",
    "sign_manifest",
    "verify_manifest",
    "sign_bundle",
    "resolve_verify_key",
]

SIGNATURE = "manifest.json.sig"
PUBKEY_ENV = "SSP_BUNDLE_PUBKEY"
_MAX_KEY_BYTES = 16 << 10
_SIG_LEN = 64


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise SDKError(
            "signed bundles need the 'cryptography' package: pip install 'ssp-edge[runtime]' "
            "(or pip install cryptography)"
        ) from None
    return serialization, ed25519


def _key_bytes(key: str | os.PathLike[str] | bytes, what: str) -> tuple[bytes, str]:
    """PEM bytes of a key given as bytes, PEM text, or a file path; and how to name it in errors."""
    if isinstance(key, bytes):
        return key, f"the {what} key (bytes)"
    if isinstance(key, str) and key.lstrip().startswith("-----BEGIN"):
        return key.encode(), f"the {what} key (PEM text)"
    if not isinstance(key, (str, os.PathLike)):
        raise SDKError(f"the {what} key must be a PEM file path or PEM bytes, got {type(key).__name__}")
    p = Path(key)
    try:
        if p.stat().st_size > _MAX_KEY_BYTES:
            raise SDKError(f"{what} key file {str(p)!r} is too large to be a PEM key")
        return p.read_bytes(), f"{what} key file {str(p)!r}"
    except OSError as e:
        raise SDKError(
            f"cannot read the {what} key file {str(p)!r} ({e.strerror or e}); make one with "
            "`ssp convert keygen --out KEYNAME`"
        ) from None


def load_public_key(key: str | os.PathLike[str] | bytes) -> Any:
    """An Ed25519 public key from a PEM file path, PEM text or PEM bytes (``ssp convert keygen``'s ``.pub.pem``)."""
    serialization, ed25519 = _crypto()
    data, name = _key_bytes(key, "public")
    try:
        pub = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        hint = " (that is a private key: pass the .pub.pem file)" if b"PRIVATE KEY" in data else ""
        raise SDKError(f"{name} is not a PEM public key{hint}; make a key pair with `ssp convert keygen`") from None
    if not isinstance(pub, ed25519.Ed25519PublicKey):
        raise SDKError(f"{name} is not an Ed25519 key; make one with `ssp convert keygen`")
    return pub


def load_private_key(key: str | os.PathLike[str] | bytes) -> Any:
    """An unencrypted Ed25519 private key (PKCS#8 PEM) from a file path, PEM text or bytes."""
    serialization, ed25519 = _crypto()
    data, name = _key_bytes(key, "private")
    try:
        priv = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise SDKError(f"{name} is encrypted; give an unencrypted Ed25519 PEM key (ssp convert keygen)") from None
    except ValueError:
        raise SDKError(f"{name} is not a PEM private key; make one with `ssp convert keygen`") from None
    if not isinstance(priv, ed25519.Ed25519PrivateKey):
        raise SDKError(f"{name} is not an Ed25519 key; make one with `ssp convert keygen`")
    return priv


def generate_keypair(out: str | os.PathLike[str], force: bool = False) -> tuple[Path, Path]:
    """Write ``OUT.pem`` (private, 0600) and ``OUT.pub.pem`` (public, 0644); refuses to overwrite unless ``force``."""
    serialization, ed25519 = _crypto()
    base = Path(out)
    if base.suffix == ".pem":
        base = base.with_suffix("")
    priv_path, pub_path = base.with_name(base.name + ".pem"), base.with_name(base.name + ".pub.pem")
    for p in (priv_path, pub_path):
        if (p.exists() or p.is_symlink()) and not force:
            raise SDKError(f"{str(p)!r} exists; choose another --out or pass --force to replace the key pair")
    key = ed25519.Ed25519PrivateKey.generate()
    priv = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    base.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(priv_path, priv, mode=0o600)
    atomic_write_bytes(pub_path, pub, mode=0o644)
    return priv_path, pub_path


def sign_manifest(manifest_bytes: bytes, key: str | os.PathLike[str] | bytes) -> bytes:
    """The signature file's content: base64 of the Ed25519 signature over ``manifest_bytes`` (one line)."""
    return base64.b64encode(load_private_key(key).sign(manifest_bytes)) + b"\n"


def verify_manifest(manifest_bytes: bytes, signature_file: bytes | None, key: Any, where: str) -> None:
    """Raise BundleError unless ``signature_file`` is a valid signature of ``manifest_bytes`` by ``key``."""
    pub = key if not isinstance(key, (str, bytes, os.PathLike)) else load_public_key(key)
    from cryptography.exceptions import InvalidSignature

    if signature_file is None:
        raise BundleError(
            f"bundle {where!r} is not signed (no {SIGNATURE}) but a verify key was given; sign it "
            f"with `ssp convert sign BUNDLE --key KEY.pem`, or open it without verify_key / "
            f"${PUBKEY_ENV}"
        )
    try:
        sig = base64.b64decode(signature_file.strip(), validate=True)
    except (binascii.Error, ValueError):
        sig = b""
    if len(sig) != _SIG_LEN:
        raise BundleError(
            f"bundle {where!r}: {SIGNATURE} is not an Ed25519 signature (base64 of 64 bytes); re-sign "
            "with `ssp convert sign`"
        )
    try:
        pub.verify(sig, manifest_bytes)
    except InvalidSignature:
        raise BundleError(
            f"bundle {where!r}: the signature in {SIGNATURE} does not match manifest.json for this "
            "key (modified manifest, or signed with another key); get the bundle again from its "
            "publisher or re-sign it"
        ) from None


def resolve_verify_key(verify_key: str | os.PathLike[str] | bytes | None) -> Any:
    """The public key to check with: ``verify_key``, else ``$SSP_BUNDLE_PUBKEY`` (a PEM path or PEM text), else None."""
    src = "verify_key"
    if verify_key is None:
        verify_key = os.environ.get(PUBKEY_ENV, "").strip()
        if not verify_key:
            return None
        src = f"${PUBKEY_ENV}"
    if not isinstance(verify_key, (str, bytes, os.PathLike)):
        return verify_key  # an already loaded Ed25519PublicKey
    try:
        return load_public_key(verify_key)
    except SDKError as e:
        raise SDKError(f"{src}: {e}") from None


def sign_bundle(
    root: str | os.PathLike[str],
    key: str | os.PathLike[str] | bytes,
    check_key: str | os.PathLike[str] | bytes | None = None,
) -> Path:
    """Verify the bundle's files against its manifest, then write ``manifest.json.sig`` (atomically)."""
    from .bundle import MANIFEST, Bundle

    b = Bundle.open(root, verify_key=False)  # every listed file matches: never sign a tampered bundle
    data = b.manifest_bytes
    sig = sign_manifest(data, key)
    if check_key is not None:
        verify_manifest(data, sig, check_key, str(root))
    path = b.target(SIGNATURE)
    if b.target(MANIFEST).read_bytes() != data:
        raise BundleError(f"bundle {str(root)!r}: manifest.json changed while signing; sign again")
    atomic_write_bytes(path, sig)
    return path
