"""Opening a deployment bundle: its manifest and served files verified, the model verified, decrypted and opened in
memory, and served as `workbench serve --bundle` serves it.

`load_bundle` trusts the public key it is given; without one it takes the bundle's own, which catches a damaged
or altered file but not someone who replaced the whole bundle, key included: pass the signer's key from elsewhere
(a mounted ConfigMap, `--public-key`) where that matters.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError
from ...models.runners import Runner, RuntimeOptions
from . import protect
from .config import PUBLIC_KEY, SERVER_CONFIG, read_server_config
from .manifest import verified_manifest


def load_bundle(bundle_dir: Path | str, model_key: bytes, public_key=None, *, options: RuntimeOptions | None = None):
    """Verify a bundle and open its model in memory: `(runner, server_config)`, for `workbench serve --bundle`.

    Args:
        bundle_dir: the bundle (in the image: /app/bundle, which holds only what the server needs).
        model_key: the 32-byte key (`protect.load_key`).
        public_key: the signer's public key (PEM path, bytes or key); None: the bundle's own (see the module doc).
        options: runtime options; None: threads and precision from `server.yaml`.
    Raises:
        ConfigError: not a bundle. SignatureError: the bundle's signature, `server.yaml` or the model's manifest
            does not verify. DecryptionError: the key is not the model's.
    """
    folder = Path(bundle_dir)
    public = public_key if public_key is not None else folder / PUBLIC_KEY
    manifest = verified_manifest(folder, public)
    for name in manifest["served"]:
        path = folder / name
        if not path.is_file() or protect.digest(path.read_bytes()) != manifest["files"].get(name):
            raise protect.SignatureError(f"{folder.name}/{name} is missing or altered since signing", protect.AGAIN)
    server = read_server_config(folder / SERVER_CONFIG)
    options = options or server.runtime_options()
    runner: Runner = protect.open_protected(folder / server.model, model_key, public, options)
    if runner.runtime != server.runtime:
        raise ConfigError(f"server.yaml says {server.runtime}, the model is {runner.runtime}", "make the bundle again")
    return runner, server


def open_bundle(bundle_dir: Path | str, model_key: bytes, public_key=None, **overrides):
    """What `workbench serve --bundle` serves: `(ServedModel, ServeConfig)` from a verified bundle.

    The model is named `variant-<id>` and versioned by the variant id, as `ServedModel.from_variant` names it.
    Args:
        overrides: host, port, certfile, keyfile, keys, audit (None: what `server.yaml` says).
    Raises:
        as `load_bundle`; ConfigError: a TLS file that does not exist, a non-loopback address without TLS.
    """
    from ..service.model import ServedModel

    runner, server = load_bundle(bundle_dir, model_key, public_key)
    config = server.serve_config(**overrides)
    name, version = f"variant-{server.variant_id}", str(server.variant_id)
    model = ServedModel.from_runner(runner, imgsz=server.imgsz, name=name, version=version, names=server.names)
    return model, config
