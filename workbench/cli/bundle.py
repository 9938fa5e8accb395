"""The deployment command of `workbench`: `bundle` (a variant's encrypted, signed model with its server config,
Dockerfile and Kubernetes manifests, in one folder)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .arguments import _positive

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

MODEL_KEY_FILE = "model.key"


def _keys_folder(workspace: Path) -> Path:
    """Where `--new-keys` writes and the command looks by default: beside the workspace, never inside a bundle."""
    return workspace.parent / f"{workspace.name}-keys"


def _new_keys(folder: Path) -> None:
    from ..core.errors import ConfigError
    from ..core.serve.bundle import protect

    if (folder / MODEL_KEY_FILE).exists() or (folder / "signing-key.pem").exists():
        raise ConfigError(
            f"keys already exist in {folder}", f"use them (leave out --new-keys), or move {folder} aside first"
        )
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    protect.write_key_file(folder / MODEL_KEY_FILE, protect.generate_key())
    paths = protect.generate_signing_key(folder)
    print(f"new model key:     {folder / MODEL_KEY_FILE} (0600; the server needs it: ${protect.KEY_ENV} or a file)")
    print(f"new signing key:   {paths.private_key} (0600; keep it off the serving host)")
    print(f"public key:        {paths.public_key} (copied into the bundle)")


def _model_key(args, keys: Path) -> bytes:
    """--model-key-file, else $WORKBENCH_MODEL_KEY, else the key file beside the workspace."""
    from ..core.errors import ConfigError
    from ..core.serve.bundle import protect

    if args.model_key_file:
        return protect.load_key(key_file=args.model_key_file)
    if args.new_keys:  # the key just made, whatever the environment says
        return protect.load_key(key_file=keys / MODEL_KEY_FILE)
    if os.environ.get(protect.KEY_ENV):
        return protect.load_key()
    if (keys / MODEL_KEY_FILE).is_file():
        return protect.load_key(key_file=keys / MODEL_KEY_FILE)
    raise ConfigError(
        f"no model key: no --model-key-file, ${protect.KEY_ENV} unset, nothing in {keys}",
        "pass --model-key-file FILE, set the variable, or make keys with --new-keys",
    )


def _variant_id(workspace: Workspace, given: str) -> int:
    """A variant by id, or by its exact name in the ledger."""
    from ..core.errors import ConfigError

    if given.isdigit():
        return int(given)
    matches = [v.id for v in workspace.ledger.variants() if v.name == given]
    if len(matches) != 1:
        raise ConfigError(f"{len(matches)} variants are named {given!r}", "pass the variant's id (see the ledger)")
    return matches[0]


def _bundle(args) -> int:
    from ..core.errors import ConfigError
    from ..core.serve.bundle.make import BundleConfig, _open_workspace, make_bundle
    from ..core.store.workspace import default_workspace

    root = Path(args.workspace).expanduser().resolve() if args.workspace else default_workspace()
    keys = Path(args.signing_key).expanduser().resolve() if args.signing_key else _keys_folder(root)
    out = Path(args.out).expanduser().resolve()
    if keys.is_relative_to(out) or out.is_relative_to(keys):
        raise ConfigError(f"the keys folder {keys} and the bundle {out} overlap", "keep the keys outside the bundle")
    workspace = _open_workspace(root)
    if args.new_keys:
        _new_keys(keys)
    given = {k: getattr(args, k) for k in ("imgsz", "port", "threads", "precision", "image", "base_image")}
    config = BundleConfig(**{k: v for k, v in given.items() if v is not None}, max_replicas=args.max_replicas)
    report = make_bundle(
        workspace,
        _variant_id(workspace, args.variant),
        out,
        model_key=_model_key(args, keys),
        signing_key_folder=keys,
        config=config,
    )
    print(f"bundle:  {report.out} ({len(report.files)} files; variant {report.variant_id}, {report.runtime})")
    print(f"signer:  {report.signer}")
    print(f"image:   docker build -t {report.image} {report.out}")
    print(f"command: {' '.join(report.command)}")
    print(f"next:    {report.out / 'README.md'} (run, deploy, what is not included)")
    return 0


def add_bundle_parsers(sub) -> None:
    """Register `workbench bundle VARIANT OUT`."""
    command = sub.add_parser(
        "bundle", help="a variant's encrypted, signed model with its server config, Dockerfile and Kubernetes files"
    )
    command.add_argument("variant", help="the variant's id (or exact name) in the workspace: ONNX or OpenVINO")
    command.add_argument("out", help="a new (or empty) folder for the bundle")
    command.add_argument("--workspace", default=None, help="default: $WORKBENCH_WORKSPACE or ./workbench-runs")
    command.add_argument(
        "--model-key-file", default=None, help="the model key (hex, 0600); default $WORKBENCH_MODEL_KEY"
    )
    command.add_argument(
        "--signing-key", default=None, help="folder of signing-key.pem (default: <workspace>-keys beside it)"
    )
    command.add_argument(
        "--new-keys", action="store_true", help="make a model key and a signing key pair there first (0600)"
    )
    command.add_argument("--imgsz", type=_positive, default=None, help="the size it serves at (default: its export's)")
    command.add_argument("--port", type=_positive, default=None, help="the container's HTTPS port (default 8443)")
    command.add_argument("--threads", type=_positive, default=None, help="inference threads (default: every core)")
    command.add_argument("--precision", default=None, choices=["f32", "bf16", "f16"], help="OpenVINO's hint")
    command.add_argument("--image", default=None, help="the image name in the manifests (your registry's)")
    command.add_argument("--base-image", default=None, help="default: python:<this Python>-slim-bookworm")
    command.add_argument("--max-replicas", type=_positive, default=4, help="the autoscaler's ceiling (default 4)")
    command.set_defaults(run=_bundle)
