"""Signed bundles: a detached Ed25519 signature (the `cryptography` package) over manifest.json, which hashes
every file. The right key opens; a changed byte in any file, a wrong key, no or a garbage signature is refused."""

from __future__ import annotations

import stat
import sys

import pytest
from helpers import run_ssp

from ssp_edge.sdk.bundle import MANIFEST, Bundle
from ssp_edge.sdk.errors import BundleError, SDKError
from ssp_edge.sdk.signing import PUBKEY_ENV, SIGNATURE, generate_keypair, sign_bundle


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    return generate_keypair(d / "alice"), generate_keypair(d / "mallory")


@pytest.fixture
def signed(mini, keys):
    (priv, pub), _ = keys
    sign_bundle(mini, priv)
    return mini


def test_keygen_modes_and_no_overwrite(tmp_path):
    priv, pub = generate_keypair(tmp_path / "k")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub.stat().st_mode) & 0o644 == stat.S_IMODE(pub.stat().st_mode)
    assert b"PRIVATE KEY" in priv.read_bytes() and b"PUBLIC KEY" in pub.read_bytes()
    with pytest.raises(SDKError, match="exists; choose another --out or pass --force"):
        generate_keypair(tmp_path / "k")


def test_signed_bundle_opens_with_the_right_key_in_every_form(signed, keys, monkeypatch):
    (_, pub), _ = keys
    for key in (pub, str(pub), pub.read_bytes(), pub.read_text()):
        b = Bundle.open(signed, verify_key=key)
        assert b.signed
    monkeypatch.setenv(PUBKEY_ENV, str(pub))
    assert Bundle.open(signed).signed


def test_signing_works_while_the_verify_variable_is_set(mini, keys, monkeypatch):
    (priv, pub), _ = keys
    monkeypatch.setenv(PUBKEY_ENV, str(pub))
    with pytest.raises(BundleError, match="is not signed"):
        Bundle.open(mini)
    sign_bundle(mini, priv)
    assert Bundle.open(mini).signed


def test_wrong_key_is_refused(signed, keys, monkeypatch):
    _, (_, other_pub) = keys
    with pytest.raises(BundleError, match="signature in manifest.json.sig does not match"):
        Bundle.open(signed, verify_key=other_pub)
    monkeypatch.setenv(PUBKEY_ENV, str(other_pub))
    with pytest.raises(BundleError, match="does not match"):
        Bundle.open(signed)


@pytest.mark.parametrize("rel", [MANIFEST, "tokenizer.json", "g.onnx", "sub/t.onnx", "e.engine", SIGNATURE])
def test_a_changed_byte_in_any_file_is_refused(signed, keys, rel):
    (_, pub), _ = keys
    p = signed / rel
    data = bytearray(p.read_bytes())
    i = len(data) // 2
    data[i] = (data[i] + 1) % 256 if rel != SIGNATURE else ord("A") if data[i] != ord("A") else ord("B")
    p.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match|not an Ed25519 signature|not valid JSON"):
        Bundle.open(signed, verify_key=pub)


def test_unsigned_bundle_with_a_key_is_refused(mini, keys):
    (_, pub), _ = keys
    with pytest.raises(BundleError, match="is not signed .* `ssp convert sign"):
        Bundle.open(mini, verify_key=pub)
    Bundle.open(mini)  # without a key an unsigned bundle still opens


def test_garbage_signature_and_bad_keys(signed, keys, tmp_path):
    (priv, pub), _ = keys
    (signed / SIGNATURE).write_bytes(b"not base64 !!\n")
    with pytest.raises(BundleError, match="not an Ed25519 signature"):
        Bundle.open(signed, verify_key=pub)
    with pytest.raises(SDKError, match="that is a private key: pass the .pub.pem file"):
        Bundle.open(signed, verify_key=priv)
    with pytest.raises(SDKError, match="cannot read the public key file"):
        Bundle.open(signed, verify_key=tmp_path / "nope.pem")
    with pytest.raises(SDKError, match="not a PEM public key"):
        Bundle.open(signed, verify_key=b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


def test_sign_refuses_a_tampered_bundle(mini, keys):
    (priv, _), _ = keys
    (mini / "g.onnx").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="g.onnx does not match its sha256"):
        sign_bundle(mini, priv)
    assert not (mini / SIGNATURE).exists()


def test_saving_a_changed_manifest_removes_the_stale_signature(signed, keys):
    (_, pub), _ = keys
    b = Bundle.open(signed, verify_key=pub)
    b.manifest.created_by = "someone else"
    with pytest.warns(UserWarning, match="signature was removed"):
        b.save()
    assert not (signed / SIGNATURE).exists()
    with pytest.raises(BundleError, match="is not signed"):
        Bundle.open(signed, verify_key=pub)


def test_missing_cryptography_is_a_clear_error(signed, keys, monkeypatch):
    (_, pub), _ = keys
    for mod in [m for m in sys.modules if m == "cryptography" or m.startswith("cryptography.")]:
        monkeypatch.setitem(sys.modules, mod, None)
    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(SDKError, match=r"signed bundles need the 'cryptography' package"):
        Bundle.open(signed, verify_key=pub)
    Bundle.open(signed)  # unsigned use needs no cryptography


def test_cli_keygen_and_sign(mini, tmp_path):
    r = run_ssp("convert", "keygen", "--out", str(tmp_path / "k"))
    assert r.returncode == 0, r.stderr
    r = run_ssp(
        "convert", "sign", str(mini), "--key", str(tmp_path / "k.pem"), "--check-key", str(tmp_path / "k.pub.pem")
    )
    assert r.returncode == 0, r.stderr
    assert Bundle.open(mini, verify_key=tmp_path / "k.pub.pem").signed
    r = run_ssp("convert", "sign", str(mini), "--key", str(tmp_path / "k.pub.pem"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "not a PEM private key" in r.stderr
