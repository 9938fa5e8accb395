"""A deployment bundle's signed manifest: every file's sha256, signed with Ed25519 when the bundle is made, and
checked (signature, then every file: none altered, missing or added) before anything of it is served."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

from ...errors import ConfigError
from ..security.tls import write_private_file
from . import protect
from .config import MANIFEST, PUBLIC_KEY, SERVER_CONFIG, SIGNATURE

BUNDLE_FORMAT = "deploy-workbench deployment bundle"


def digests(folder: Path) -> dict:
    return {
        p.relative_to(folder).as_posix(): protect.digest(p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).as_posix() not in (MANIFEST, SIGNATURE)
    }


def sign(folder: Path, private, about: dict) -> None:
    manifest = {
        "format": BUNDLE_FORMAT,
        "version": 1,
        "signed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "signer": protect.fingerprint(private.public_key()),
        **about,
        "served": [SERVER_CONFIG, PUBLIC_KEY],  # what the server checks at start (model/ has its own manifest)
        "files": digests(folder),
    }
    text = json.dumps(manifest, indent=2, sort_keys=True).encode()
    write_private_file(folder / MANIFEST, text, 0o644)
    write_private_file(folder / SIGNATURE, base64.b64encode(private.sign(text)) + b"\n", 0o644)


def verify_bundle(bundle_dir: Path | str, public_key=None) -> dict:
    """Check the bundle's signature and that every file is there, unchanged, and none added; returns its manifest.

    Raises:
        SignatureError: unsigned, signed by another key, or a file altered, missing or added.
    """
    folder = Path(bundle_dir)
    manifest = verified_manifest(folder, public_key)
    found, expected = digests(folder), manifest["files"]
    changed = sorted(n for n in set(found) | set(expected) if found.get(n) != expected.get(n))
    if changed:
        raise protect.SignatureError(f"{folder.name} differs from its signed manifest: {changed[:8]}", protect.AGAIN)
    return manifest


def verified_manifest(folder: Path, public_key) -> dict:
    from cryptography.exceptions import InvalidSignature

    if not (folder / MANIFEST).is_file():
        raise ConfigError(f"{folder} is not a deployment bundle (no {MANIFEST})", "workbench bundle VARIANT OUT")
    key = protect.as_public_key(public_key if public_key is not None else folder / PUBLIC_KEY)
    text = (folder / MANIFEST).read_bytes()
    try:
        key.verify(base64.b64decode((folder / SIGNATURE).read_bytes().strip(), validate=True), text)
    except (OSError, InvalidSignature, ValueError):
        raise protect.SignatureError(
            f"the signature of {folder.name}/{MANIFEST} is missing or does not verify with {protect.fingerprint(key)}",
            "pass the signer's public key, or copy the bundle again from where it was made",
        ) from None
    manifest = json.loads(text)
    if manifest.get("format") != BUNDLE_FORMAT:
        raise ConfigError(f"{folder}/{MANIFEST} is not a {BUNDLE_FORMAT}", "make the bundle again")
    return manifest
