"""Protected model bundles: every file AES-256-GCM encrypted, a manifest of their sha256 signed with Ed25519 and
verified before anything is decrypted, the model decrypted into memory only and handed to its runtime from there.

A bundle folder holds `<name>.enc` per artifact file (a magic, a random 96-bit nonce, the ciphertext and its tag;
the bundle's id and the file's relative name are the associated data, so files cannot be swapped or moved between
bundles), `bundle.json` (what the artifact is: name, runtime, cipher; no secret) and `manifest.json` +
`manifest.sig` (every file's sha256 and size, signed). The encryption key comes from `$WORKBENCH_MODEL_KEY` or a
0600 key file and is never written into the bundle.

What this protects against:
- theft of the bundle at rest or in transit (a copied disk, a leaked backup, an artifact store): without the key,
  the files are ciphertext;
- tampering at rest or in transit: a changed, missing, added or swapped file, or a bundle signed by another key,
  is refused before any byte is decrypted or parsed by a runtime.
What it does not protect against:
- a process that holds the key, or reads the serving process's memory: the decrypted model lives there while it
  serves, as it must for the runtime to use it;
- root on the serving host: it can read the key from the environment or the key file, and the process's memory;
- model extraction through the API (querying it to distil a copy): that is for the rate limits and roles of the
  service, not for encryption;
- a leaked signing key: whoever holds it can sign anything; keep it off the serving host (only the public key
  goes there).
Obfuscating the graph would only slow a reader with the key down; keeping the model secret from the host itself
would take a trusted execution environment (Intel SGX/TDX, AMD SEV-SNP with remote attestation releasing the key
only to a measured enclave), which this workbench does not set up.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from ...errors import ConfigError, WorkbenchError
from ...models.in_memory import IN_MEMORY_RUNTIMES, open_runner_from_memory
from ...models.runners import Runner, RuntimeOptions, runtime_for
from ...store.atomic import staged
from ...store.portable import loose_mode
from ..security.tls import write_private_file

KEY_ENV = "WORKBENCH_MODEL_KEY"
MANIFEST, SIGNATURE, BUNDLE = "manifest.json", "manifest.sig", "bundle.json"
BUNDLE_FORMAT = "deploy-workbench protected model"
_MAGIC = b"WBGCM\x00\x01\x00"  # format marker and version, 8 bytes
_NONCE_BYTES = 12
_KEY_FIX = (
    f"set {KEY_ENV} to 32 random bytes in hex (python -c 'import secrets; print(secrets.token_hex(32))') "
    "or pass a key file holding them (chmod 600)"
)


class ProtectionError(WorkbenchError):
    """A protected bundle is refused: nothing of it was decrypted or loaded."""


class SignatureError(ProtectionError):
    """The bundle is unsigned, signed by another key, or a file differs from what the manifest signed."""


class DecryptionError(ProtectionError):
    """A file does not decrypt: a wrong key, or a file altered, swapped or moved after encryption."""


@dataclass(frozen=True)
class SigningKeyPaths:
    """An Ed25519 signing key pair on disk: the private key (0600; keep it off the serving host) and the public."""

    private_key: Path
    public_key: Path


def generate_key() -> bytes:
    """A new 256-bit model encryption key."""
    return secrets.token_bytes(32)


def write_key_file(path: Path | str, key: bytes) -> Path:
    """Write `key` as hex to `path`, readable by its owner only (0600), atomically."""
    check_key(key)
    return write_private_file(Path(path), key.hex().encode() + b"\n", 0o600)


def load_key(env: str = KEY_ENV, key_file: Path | str | None = None) -> bytes:
    """The 32-byte model key: from `key_file` when given, else from the environment variable `env`.

    Either holds the key in hex (64 characters) or base64. A key file readable by group or others is refused.
    Raises:
        ConfigError: no key, a malformed one (its value is never echoed), or a key file with loose permissions.
    """
    if key_file is not None:
        path = Path(key_file)
        if not path.is_file():
            raise ConfigError(f"the key file {path} does not exist", _KEY_FIX)
        mode = loose_mode(path)
        if mode is not None:
            raise ConfigError(f"the key file {path} is readable by others (mode {mode:03o})", f"chmod 600 {path}")
        return _parse_key(path.read_text(errors="replace"), f"the key file {path}")
    text = os.environ.get(env)
    if not text:
        raise ConfigError(f"no model key: ${env} is not set and no key file was given", _KEY_FIX)
    return _parse_key(text, f"${env}")


def _parse_key(text: str, where: str) -> bytes:
    text = text.strip()
    try:
        key = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != 32:
        raise ConfigError(f"{where} does not hold a 32-byte key in hex or base64 ({len(text)} characters)", _KEY_FIX)
    return key


def check_key(key: bytes) -> None:
    """Refuse a model key that is not the 32 bytes AES-256 takes (ConfigError)."""
    if not isinstance(key, bytes) or len(key) != 32:
        raise ConfigError("the model key must be 32 bytes (AES-256)", "use generate_key() or load_key()")


def generate_signing_key(folder: Path | str) -> SigningKeyPaths:
    """A new Ed25519 key pair in `folder`: signing-key.pem (0600) and signing-key.pub.pem. An existing one is kept.

    Raises:
        ConfigError: a signing key is already there (delete it first to replace it: bundles it signed then fail).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = Path(folder)
    paths = SigningKeyPaths(folder / "signing-key.pem", folder / "signing-key.pub.pem")
    if paths.private_key.exists():
        raise ConfigError(f"{paths.private_key} exists", "use it, or delete it first to make a new one")
    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_private_file(paths.private_key, pem, 0o600)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    write_private_file(paths.public_key, public, 0o644)
    return paths


def encrypt_artifact(src: Path | str, out_folder: Path | str, key: bytes) -> Path:
    """Encrypt an artifact (an .onnx file or an OpenVINO folder) into `out_folder`, one `.enc` per file.

    The folder appears whole or not at all (it is staged, then renamed); it replaces an earlier one. Sign it
    next (`sign_manifest`), or do both at once with `protect`.
    Raises:
        ConfigError: an artifact that cannot be served from memory, a missing source, a bad key.
    """
    src, out_folder = Path(src), Path(out_folder)
    _check_source(src, out_folder, key)
    with staged(out_folder) as staging:
        _encrypt_into(src, staging, key)
    return out_folder


def protect(src: Path | str, out_folder: Path | str, key: bytes, private_key) -> Path:
    """Encrypt and sign in one step: `out_folder` appears only once it is complete and signed."""
    src, out_folder = Path(src), Path(out_folder)
    _check_source(src, out_folder, key)
    with staged(out_folder) as staging:
        _encrypt_into(src, staging, key)
        sign_manifest(staging, private_key)
    return out_folder


def _check_source(src: Path, out_folder: Path, key: bytes) -> None:
    check_key(key)
    if not src.exists():
        raise ConfigError(f"{src} does not exist", "export the model first")
    if runtime_for(src) not in IN_MEMORY_RUNTIMES or (src.is_dir() and not any(src.glob("*.xml"))):
        raise ConfigError(f"{src.name} cannot be protected", "export to ONNX or OpenVINO and protect that")
    if out_folder.resolve().is_relative_to(src.resolve()):
        raise ConfigError(f"{out_folder} is inside {src}", "write the protected bundle to a folder of its own")


def _encrypt_into(src: Path, folder: Path, key: bytes) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    plain = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    names = [src.name if src.is_file() else f"{src.name}/{p.relative_to(src).as_posix()}" for p in plain]
    bundle = {
        "format": BUNDLE_FORMAT,
        "version": 1,
        "cipher": "AES-256-GCM",
        "bundle_id": secrets.token_hex(16),
        "artifact": src.name,
        "runtime": str(runtime_for(src)),
        "files": names,
    }
    folder.mkdir(parents=True, exist_ok=True)
    aes = AESGCM(key)
    for path, name in zip(plain, names, strict=True):
        nonce = secrets.token_bytes(_NONCE_BYTES)  # random per file: a key never meets the same nonce twice
        sealed = aes.encrypt(nonce, path.read_bytes(), _associated(bundle["bundle_id"], name))
        target = folder / f"{name}.enc"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_private_file(target, _MAGIC + nonce + sealed, 0o644)
    write_private_file(folder / BUNDLE, json.dumps(bundle, indent=2).encode(), 0o644)


def _associated(bundle_id: str, name: str) -> bytes:
    """What GCM authenticates besides the ciphertext: the format, the bundle and the file's place in it."""
    return f"{BUNDLE_FORMAT}\0{bundle_id}\0{name}".encode()


def sign_manifest(folder: Path | str, private_key) -> Path:
    """Write `manifest.json` (every file's sha256 and size, and the bundle's description) and its Ed25519 signature
    `manifest.sig` into an encrypted bundle.

    Args:
        folder: a folder `encrypt_artifact` wrote.
        private_key: an Ed25519 private key, or the path of its PEM file (0600).
    Raises:
        ConfigError: the folder is not an encrypted bundle, or holds a file that is not ciphertext.
    """
    folder, key = Path(folder), as_private_key(private_key)
    bundle = _read_bundle(folder)
    files = _listed(folder)
    stray = [n for n in files if n != BUNDLE and not n.endswith(".enc")]
    if stray:
        raise ConfigError(f"{folder} holds files that are not ciphertext: {stray[:5]}", "sign only what encrypt wrote")
    manifest = {
        "manifest_version": 1,
        "signature": "Ed25519",
        "signed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "signer": fingerprint(key.public_key()),
        "bundle": bundle,
        "files": {name: digest((folder / name).read_bytes()) for name in files},
    }
    text = json.dumps(manifest, indent=2, sort_keys=True).encode()
    write_private_file(folder / MANIFEST, text, 0o644)
    write_private_file(folder / SIGNATURE, base64.b64encode(key.sign(text)) + b"\n", 0o644)
    return folder / MANIFEST


def verify_manifest(folder: Path | str, public_key) -> dict:
    """Check the bundle's signature and every file against it; returns the manifest.

    Raises:
        SignatureError: no manifest or signature, a signature that does not verify with `public_key`, a file
            altered, missing or not in the manifest.
    """
    manifest, _ = _verified(Path(folder), public_key)
    return manifest


def decrypt_bundle(folder: Path | str, key: bytes, public_key) -> tuple[dict, dict[str, bytes]]:
    """Verify the bundle, then decrypt every file into memory: (manifest, {name inside the artifact: bytes}).

    The bytes that were verified are the bytes decrypted (each file is read once). Nothing is written.
    Raises:
        SignatureError: as `verify_manifest`.
        DecryptionError: a file does not decrypt with `key`.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    check_key(key)
    manifest, blobs = _verified(Path(folder), public_key)
    bundle, aes, plain = manifest["bundle"], AESGCM(key), {}
    for name in bundle["files"]:
        blob = blobs[f"{name}.enc"]
        if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + _NONCE_BYTES + 16:
            raise DecryptionError(f"{name}.enc is not a workbench ciphertext", "protect the artifact again")
        nonce, sealed = blob[len(_MAGIC) : len(_MAGIC) + _NONCE_BYTES], blob[len(_MAGIC) + _NONCE_BYTES :]
        try:
            data = aes.decrypt(nonce, sealed, _associated(bundle["bundle_id"], name))
        except InvalidTag:
            raise DecryptionError(
                f"{name}.enc does not decrypt: the key is not the one it was encrypted with, or the file was "
                "altered or moved within the bundle",
                f"pass the bundle's key ({KEY_ENV} or the key file); if the key is right, protect the model again",
            ) from None
        inside = PurePosixPath(name).relative_to(bundle["artifact"]) if "/" in name else PurePosixPath(name)
        plain[str(inside)] = data
    return manifest, plain


def open_protected(folder: Path | str, key: bytes, public_key, options: RuntimeOptions = RuntimeOptions()) -> Runner:
    """Verify, decrypt into memory and open a protected bundle: the `Runner` `open_runner` would give.

    Raises:
        SignatureError, DecryptionError: the bundle is refused (nothing was loaded).
        ArtifactLoadError: the decrypted model does not load.
    """
    folder = Path(folder)
    manifest, files = decrypt_bundle(folder, key, public_key)
    artifact = manifest["bundle"]["artifact"]
    runner = open_runner_from_memory(artifact, files, options, label=folder / artifact)
    runner.context["protected"] = {"bundle_id": manifest["bundle"]["bundle_id"], "signer": manifest["signer"]}
    return runner


def _verified(folder: Path, public_key) -> tuple[dict, dict[str, bytes]]:
    """The manifest and each listed file's bytes, once the signature and every digest check out."""
    from cryptography.exceptions import InvalidSignature

    key = as_public_key(public_key)
    if not (folder / MANIFEST).is_file() or not (folder / SIGNATURE).is_file():
        raise SignatureError(f"{folder} is not signed (no {MANIFEST} or {SIGNATURE})", "sign it: sign_manifest")
    text = (folder / MANIFEST).read_bytes()
    try:
        key.verify(base64.b64decode((folder / SIGNATURE).read_bytes().strip(), validate=True), text)
    except (InvalidSignature, binascii.Error, ValueError):
        raise SignatureError(
            f"the signature of {folder.name}/{MANIFEST} does not verify with the public key {fingerprint(key)}",
            "the manifest was altered, or was signed by another key: pass the signer's public key, or sign it again",
        ) from None
    manifest = json.loads(text)  # authentic from here on
    expected, found = manifest["files"], _listed(folder)
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or extra:
        raise SignatureError(f"{folder.name} differs from its manifest: missing {missing}, extra {extra}", AGAIN)
    blobs = {name: (folder / name).read_bytes() for name in expected}
    altered = [name for name, data in blobs.items() if digest(data) != expected[name]]
    if altered or json.loads(blobs[BUNDLE]) != manifest["bundle"]:
        raise SignatureError(f"{folder.name}: {altered or [BUNDLE]} altered since signing", AGAIN)
    return manifest, blobs


AGAIN = "copy the bundle again from its source, or protect and sign the model again"  # the fix for a changed bundle


def _listed(folder: Path) -> list[str]:
    """Every entry under `folder` but the manifest and signature, by relative name; a link or odd entry is refused."""
    names = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise SignatureError(f"{path} is a link or special file", "a bundle holds plain files only")
        name = path.relative_to(folder).as_posix()
        if path.is_file() and name not in (MANIFEST, SIGNATURE):
            names.append(name)
    return names


def _read_bundle(folder: Path) -> dict:
    try:
        bundle = json.loads((folder / BUNDLE).read_bytes())
    except (OSError, ValueError):
        raise ConfigError(f"{folder} is not an encrypted bundle (no readable {BUNDLE})", "encrypt_artifact") from None
    if bundle.get("format") != BUNDLE_FORMAT:
        raise ConfigError(f"{folder}/{BUNDLE} is not a {BUNDLE_FORMAT}", "encrypt the artifact with encrypt_artifact")
    return bundle


def digest(data: bytes) -> dict:
    """A file's manifest entry: the sha256 and size of its bytes (what the signature vouches for)."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def fingerprint(public_key) -> str:
    """The first 16 hex digits of the sha256 of the raw public key: names a signer in messages and manifests."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def as_private_key(value):
    """An Ed25519 private key from itself, PEM bytes or a PEM file readable by its owner only."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if isinstance(value, (str, Path)):
        path = Path(value)
        if not path.is_file():
            raise ConfigError(f"the signing key {path} does not exist", "make one: generate_signing_key(folder)")
        if loose_mode(path) is not None:
            raise ConfigError(f"the signing key {path} is readable by others", f"chmod 600 {path}")
        value = path.read_bytes()
    if isinstance(value, bytes):
        try:
            value = load_pem_private_key(value, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"not an unencrypted PEM private key ({exc})", "pass signing-key.pem") from None
    if not isinstance(value, Ed25519PrivateKey):
        raise ConfigError(f"the signing key is a {type(value).__name__}, not Ed25519", "generate_signing_key(folder)")
    return value


def as_public_key(value):
    """An Ed25519 public key from itself, PEM bytes, 32 raw bytes or a PEM file."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if isinstance(value, (str, Path)):
        if not Path(value).is_file():
            raise ConfigError(f"the public key {value} does not exist", "pass the signer's signing-key.pub.pem")
        value = Path(value).read_bytes()
    if isinstance(value, bytes):
        try:
            value = Ed25519PublicKey.from_public_bytes(value) if len(value) == 32 else load_pem_public_key(value)
        except ValueError as exc:
            raise ConfigError(f"not a PEM or raw Ed25519 public key ({exc})", "pass signing-key.pub.pem") from None
    if not isinstance(value, Ed25519PublicKey):
        raise ConfigError(f"the public key is a {type(value).__name__}, not Ed25519", "pass signing-key.pub.pem")
    return value
