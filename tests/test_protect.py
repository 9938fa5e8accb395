"""Protected model bundles: encrypted and signed, refused when altered, swapped, unsigned or opened with the wrong
key, opened from memory with outputs equal to `open_runner` on the plain artifact, the key never in the bundle."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cryptography")
pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

from workbench.core.errors import ConfigError  # noqa: E402
from workbench.core.models.runners import RuntimeOptions, example_input, open_runner  # noqa: E402
from workbench.core.serve.bundle import protect  # noqa: E402
from workbench.core.serve.bundle.protect import DecryptionError, SignatureError  # noqa: E402

IMGSZ = 64
OPTIONS = RuntimeOptions(threads=1, precision="f32")
ARTIFACTS = ("demo.onnx", "demo_openvino_model")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """The demo model exported to ONNX and to an OpenVINO folder at 64 px."""
    from workbench.core.models.cards import demo_weights
    from workbench.core.models.export import ExportConfig, export_artifact

    folder = tmp_path_factory.mktemp("plain")
    for name, fmt in zip(ARTIFACTS, ("onnx", "openvino"), strict=True):
        export_artifact(demo_weights(), ExportConfig(format=fmt, imgsz=IMGSZ), folder / name)
    return folder


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """(model key, signing key paths): the signing keys kept apart from any bundle."""
    return protect.generate_key(), protect.generate_signing_key(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def bundles(artifacts, keys, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles")
    return {name: protect.protect(artifacts / name, out / name, keys[0], keys[1].private_key) for name in ARTIFACTS}


@pytest.fixture
def copy(bundles, tmp_path):
    """A fresh copy of a bundle, to tamper with."""
    made = []

    def fresh(name: str) -> Path:
        made.append(name)
        return Path(shutil.copytree(bundles[name], tmp_path / f"copy-{len(made)}-{name}"))

    return fresh


def _resign_digests(folder: Path) -> None:
    """Update the manifest's digests to the files as they are now, without signing again (what a tamperer can do)."""
    manifest = json.loads((folder / protect.MANIFEST).read_text())
    for name in manifest["files"]:
        manifest["files"][name] = protect.digest((folder / name).read_bytes())
    (folder / protect.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))


@pytest.mark.parametrize("name", ARTIFACTS)
def test_a_protected_model_runs_as_the_plain_one(artifacts, bundles, keys, name):
    plain = open_runner(artifacts / name, OPTIONS)
    protected = protect.open_protected(bundles[name], keys[0], keys[1].public_key, OPTIONS)
    assert (protected.runtime, protected.precision, protected.input_shape) == (
        plain.runtime,
        plain.precision,
        plain.input_shape,
    )
    batch = example_input(plain, IMGSZ)
    for ours, theirs in zip(protected(batch), plain(batch), strict=True):
        assert np.array_equal(ours, theirs)
    assert protected.context["loaded_from"] == "memory" and protected.context["protected"]["signer"]
    assert protect.verify_manifest(bundles[name], keys[1].public_key)["bundle"]["artifact"] == name


def _chunks(path: Path, size: int = 48, count: int = 12) -> list[bytes]:
    """Slices of every file of an artifact, from its start to its end."""
    found = []
    for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
        data = file.read_bytes()
        found += [data[i : i + size] for i in np.linspace(0, max(len(data) - size, 0), count).astype(int)]
    return found


@pytest.mark.parametrize("name", ARTIFACTS)
def test_the_bundle_holds_ciphertext_only_and_never_the_key(artifacts, bundles, keys, name):
    key = keys[0]
    secrets = [key, key.hex().encode(), key.hex().upper().encode(), base64.b64encode(key)]
    plain = _chunks(artifacts / name)
    files = [p for p in bundles[name].rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {protect.MANIFEST, protect.SIGNATURE, protect.BUNDLE}
    for file in files:
        data = file.read_bytes()
        assert not any(s in data for s in secrets), file
        assert not any(chunk in data for chunk in plain), f"{file} holds plaintext"
        assert file.name in (protect.MANIFEST, protect.SIGNATURE, protect.BUNDLE) or file.name.endswith(".enc")
    assert not list(bundles[name].rglob("*.pem")) and not list(bundles[name].rglob(".staging*"))


def test_opening_writes_no_plaintext_anywhere(bundles, keys, tmp_path, monkeypatch):
    folder = bundles["demo_openvino_model"]
    before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("TMPDIR", str(scratch))
    written: list[str] = []
    _WRITES.append(written)
    try:
        runner = protect.open_protected(folder, keys[0], keys[1].public_key, OPTIONS)
    finally:
        _WRITES.remove(written)
    assert runner(example_input(runner, IMGSZ))
    assert not written, f"files opened for writing while opening: {written}"
    assert not list(scratch.iterdir())
    assert {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")} == before


_WRITES: list[list[str]] = []  # while a test listens, every file Python opens for writing


def _audit(event: str, args) -> None:
    if event == "open" and _WRITES and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1] or "", args[2] or 0
        if any(c in str(mode) for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            _WRITES[-1].append(str(args[0]))


sys.addaudithook(_audit)


def test_a_wrong_key_is_refused_by_the_gcm_tag(bundles, keys):
    with pytest.raises(DecryptionError, match="does not decrypt"):
        protect.open_protected(bundles["demo.onnx"], protect.generate_key(), keys[1].public_key)


def test_swapped_files_are_refused_by_the_associated_data(copy, bundles, keys, artifacts, tmp_path):
    folder = copy("demo_openvino_model")
    inside = folder / "demo_openvino_model"
    xml, weights = next(inside.glob("*.xml.enc")), next(inside.glob("*.bin.enc"))
    xml_bytes, weight_bytes = xml.read_bytes(), weights.read_bytes()
    xml.write_bytes(weight_bytes)
    weights.write_bytes(xml_bytes)
    protect.sign_manifest(folder, keys[1].private_key)  # even the signer cannot swap them
    with pytest.raises(DecryptionError, match="moved within the bundle"):
        protect.open_protected(folder, keys[0], keys[1].public_key)
    # nor move a file from another bundle of the same model and key into this one
    other = protect.protect(artifacts / "demo.onnx", tmp_path / "other", keys[0], keys[1].private_key)
    target = copy("demo.onnx")
    shutil.copyfile(other / "demo.onnx.enc", target / "demo.onnx.enc")
    protect.sign_manifest(target, keys[1].private_key)
    with pytest.raises(DecryptionError):
        protect.open_protected(target, keys[0], keys[1].public_key)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_an_altered_byte_is_refused_before_decryption(copy, keys, monkeypatch):
    from workbench.core.serve.bundle import protect as module

    opened = []
    monkeypatch.setattr(module, "open_runner_from_memory", lambda *a, **k: opened.append(a))
    folder = copy("demo.onnx")
    _flip(folder / "demo.onnx.enc")
    with pytest.raises(SignatureError, match="altered since signing"):
        protect.open_protected(folder, keys[0], keys[1].public_key)
    _resign_digests(folder)  # the manifest made to match, but not signed again: the signature refuses it
    with pytest.raises(SignatureError, match="does not verify"):
        protect.open_protected(folder, keys[0], keys[1].public_key)
    bundle = copy("demo_openvino_model")
    meta = json.loads((bundle / protect.BUNDLE).read_text())
    (bundle / protect.BUNDLE).write_text(json.dumps({**meta, "artifact": "other.onnx"}))
    with pytest.raises(SignatureError):
        protect.verify_manifest(bundle, keys[1].public_key)
    assert not opened


def test_a_missing_or_extra_file_is_refused(copy, keys):
    missing = copy("demo_openvino_model")
    next((missing / "demo_openvino_model").glob("metadata.yaml.enc")).unlink()
    with pytest.raises(SignatureError, match="missing"):
        protect.open_protected(missing, keys[0], keys[1].public_key)
    extra = copy("demo.onnx")
    (extra / "notes.txt").write_text("added after signing")
    with pytest.raises(SignatureError, match="extra"):
        protect.open_protected(extra, keys[0], keys[1].public_key)


def test_an_unsigned_bundle_and_a_wrong_public_key_are_refused(artifacts, copy, keys, tmp_path):
    unsigned = protect.encrypt_artifact(artifacts / "demo.onnx", tmp_path / "unsigned", keys[0])
    with pytest.raises(SignatureError, match="not signed"):
        protect.open_protected(unsigned, keys[0], keys[1].public_key)
    no_signature = copy("demo.onnx")
    (no_signature / protect.SIGNATURE).unlink()
    with pytest.raises(SignatureError, match="not signed"):
        protect.verify_manifest(no_signature, keys[1].public_key)
    stranger = protect.generate_signing_key(tmp_path / "stranger")
    with pytest.raises(SignatureError, match="does not verify"):
        protect.open_protected(copy("demo.onnx"), keys[0], stranger.public_key)
    signed_by_stranger = copy("demo_openvino_model")
    protect.sign_manifest(signed_by_stranger, stranger.private_key)
    with pytest.raises(SignatureError, match="does not verify"):
        protect.verify_manifest(signed_by_stranger, keys[1].public_key)


def test_the_key_loads_from_the_environment_or_a_private_file(tmp_path, monkeypatch):
    key = protect.generate_key()
    monkeypatch.setenv(protect.KEY_ENV, key.hex())
    assert protect.load_key() == key
    monkeypatch.setenv(protect.KEY_ENV, base64.b64encode(key).decode())
    assert protect.load_key() == key
    path = protect.write_key_file(tmp_path / "model.key", key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and protect.load_key(key_file=path) == key
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by others"):
        protect.load_key(key_file=path)
    monkeypatch.setenv(protect.KEY_ENV, "not-a-key-but-a-secret-value")
    with pytest.raises(ConfigError, match="32-byte key") as malformed:
        protect.load_key()
    assert "secret-value" not in str(malformed.value)  # a wrong value is never echoed
    monkeypatch.delenv(protect.KEY_ENV)
    with pytest.raises(ConfigError, match="is not set"):
        protect.load_key()
    with pytest.raises(ConfigError, match="32 bytes"):
        protect.encrypt_artifact(tmp_path, tmp_path / "out", b"short")


def test_signing_keys_are_private_and_never_overwritten(tmp_path, artifacts, keys):
    paths = protect.generate_signing_key(tmp_path / "signer")
    assert stat.S_IMODE(paths.private_key.stat().st_mode) == 0o600 and paths.public_key.read_bytes().startswith(b"---")
    with pytest.raises(ConfigError, match="exists"):
        protect.generate_signing_key(tmp_path / "signer")
    paths.private_key.chmod(0o644)
    folder = protect.encrypt_artifact(artifacts / "demo.onnx", tmp_path / "bundle", keys[0])
    with pytest.raises(ConfigError, match="readable by others"):
        protect.sign_manifest(folder, paths.private_key)


def test_only_what_can_be_opened_from_memory_is_protected(tmp_path, keys):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"not really a checkpoint")
    with pytest.raises(ConfigError, match="cannot be protected"):
        protect.encrypt_artifact(checkpoint, tmp_path / "out", keys[0])
    with pytest.raises(ConfigError, match="does not exist"):
        protect.encrypt_artifact(tmp_path / "missing.onnx", tmp_path / "out", keys[0])
    assert not (tmp_path / "out").exists()
