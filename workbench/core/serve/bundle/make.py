"""Deployment bundles: a variant's encrypted, signed model with its server config, a Dockerfile and Kubernetes
manifests, in one signed folder that builds an image and starts the service (`workbench bundle VARIANT OUT`).

The folder: `model/` (`protect.protect`: every file AES-256-GCM encrypted, its manifest signed), the public key
`signing-key.pub.pem`, `server.yaml` (a `ServerConfig`: no secret), `requirements.txt` (the server's packages
pinned to the versions installed here), `src/` (the workbench code, no weights), `Dockerfile`, `.dockerignore`,
`k8s/` and `README.md`, then `bundle-manifest.json` (every file's sha256) and its Ed25519 signature. The model key
and the private signing key are never written into it: the key comes at run time from `$WORKBENCH_MODEL_KEY` or a
0600 key file, the private key stays where the bundle was made. `load_bundle` is what `workbench serve --bundle`
calls (`load`): it checks the signature and the served files, then verifies, decrypts and opens the model in memory.
"""

from __future__ import annotations

import base64
import json
import platform
import re
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from string import Template
from typing import TYPE_CHECKING

from ...errors import ConfigError, WorkbenchError
from ...models.runners import runtime_for
from ...store.atomic import staged
from ...store.records import Format
from ..security.tls import write_private_file
from ..service.limits import Limits
from ..service.model import class_names
from . import protect
from .config import (
    GID,
    KEYS_SECRET_DIR,
    MODEL,
    PORT,
    PUBLIC_KEY,
    SERVED,
    SERVER_CONFIG,
    STATE_DIR,
    TLS_DIR,
    UID,
    ServerConfig,
    serve_command,
    server_yaml,
)
from .manifest import sign

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

SERVER_PACKAGES = (
    *("numpy", "PyYAML", "cryptography", "starlette", "uvicorn", "argon2-cffi", "pyotp", "prometheus-client"),
    "httptools",  # uvicorn's C HTTP parser, as `workbench serve` runs here
    "opencv-python-headless",  # decodes /v1/detect's images; headless: no libGL in a slim image
)
# Imported by the server's libraries whenever installed (starlette's form parser), though the server parses no form:
# pinned where installed here, so the image imports what was tested
OPTIONAL_PACKAGES = ("python-multipart",)
RUNTIME_PACKAGES = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino",)}  # onnx: reads the precision
_SAME_AS = {"opencv-python-headless": "opencv-python"}  # pinned at the version of the one installed here
K8S_FILES = ("deployment.yaml", "service.yaml", "hpa.yaml", "secrets.template.yaml", "inferenceservice.yaml")
_TEMPLATES = Path(__file__).with_name("templates")


class BundleError(WorkbenchError):
    """A bundle could not be made safely (a secret found in it): nothing was left at its place."""


@dataclass(frozen=True)
class BundleConfig:
    """What `make_bundle` may change; None takes it from the variant or the environment."""

    imgsz: int | None = None  # None: the size the variant was exported at
    port: int = PORT
    threads: int | None = None
    precision: str | None = None
    limits: Limits = field(default_factory=Limits)
    image: str | None = None  # None: workbench-<variant>:<sha256[:12]>
    base_image: str | None = None  # None: python:<this Python's version>-slim-bookworm
    min_replicas: int = 1
    max_replicas: int = 4
    cpu_target: int = 70  # percent of the CPU request, for the autoscaler
    cpu_request: str = "1"
    cpu_limit: str = "2"
    memory_request: str = "1Gi"
    memory_limit: str = "2Gi"


@dataclass(frozen=True)
class BundleReport:
    """What `make_bundle` wrote."""

    out: Path
    variant_id: int
    variant: str
    runtime: str
    image: str
    signer: str  # the Ed25519 fingerprint that verifies the bundle
    command: list[str]  # the container's command
    files: list[str]  # every file, relative to `out`


def make_bundle(
    workspace: Workspace | Path | str,
    variant_id: int,
    out: Path | str,
    *,
    model_key: bytes,
    signing_key_folder,
    config=BundleConfig(),
) -> BundleReport:
    """Write a deployment bundle for a workspace variant at `out` (everything checked first; staged, renamed).

    Args:
        workspace: a `Workspace` or its folder.
        variant_id: an ONNX or OpenVINO variant of it.
        out: a folder that does not exist or is empty.
        model_key: the 32-byte key the model is encrypted with (`protect.load_key`); never written.
        signing_key_folder: where `signing-key.pem` (0600) lies (`protect.generate_signing_key`); only the public
            key goes into the bundle.
        config: image size, port, limits, image names, replicas and resources.
    Raises:
        ConfigError: no such variant, an artifact other than ONNX or OpenVINO, `out` not empty, a bad key.
    """
    from ...store.workspace import Workspace

    workspace = workspace if isinstance(workspace, Workspace) else _open_workspace(workspace)
    variant, artifact = _bundled_variant(workspace, variant_id)
    out = _check_out(Path(out))
    protect.check_key(model_key)
    private = protect.as_private_key(Path(signing_key_folder) / "signing-key.pem")
    server = _server_config(variant, artifact, config)
    values = _values(variant, server, config, signer=protect.fingerprint(private.public_key()))
    requirements = server_requirements(server.runtime)
    with staged(out) as staging:
        staging.mkdir()
        protect.protect(artifact, staging / MODEL, model_key, private)
        _write_public_key(staging / PUBLIC_KEY, private)
        _write(staging / SERVER_CONFIG, server_yaml(server))
        _write(staging / "requirements.txt", "\n".join(requirements) + "\n")
        _copy_source(staging / "src" / "workbench")
        _write_templates(staging, values)
        sign(staging, private, {"variant_id": variant.id, "variant": variant.name, "runtime": server.runtime})
        _check_no_secrets(staging, model_key, private)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    return BundleReport(
        out, variant.id, variant.name, server.runtime, values["image"], values["signer"], serve_command(), files
    )


def _open_workspace(root):
    from ...store.workspace import Workspace

    root = Path(root).expanduser().resolve()
    if not (root / "workbench.db").is_file():
        raise ConfigError(f"no workspace at {root} (no workbench.db)", "pass --workspace, the folder of your study")
    return Workspace(root)


def _bundled_variant(workspace: Workspace, variant_id: int):
    variant = workspace.variant(variant_id)  # WorkspaceError when there is none
    if variant.format not in (Format.ONNX, Format.OPENVINO):
        raise ConfigError(
            f"variant {variant_id} ({variant.name}) is {variant.format or 'not an artifact'}: a bundle serves ONNX "
            "or OpenVINO, decrypted in memory",
            "export to ONNX or OpenVINO (workbench optimize with an export step) and bundle that variant",
        )
    artifact = workspace.artifact_path(variant_id)
    if not artifact.exists():
        raise ConfigError(f"the artifact of variant {variant_id} is missing: {artifact}", "export it again")
    return variant, artifact


def _check_out(out: Path) -> Path:
    out = out.expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not an empty folder", "name a new folder for the bundle")
    return out


def _server_config(variant, artifact: Path, config: BundleConfig) -> ServerConfig:
    imgsz = config.imgsz or variant.params.get("imgsz")
    if imgsz is None:
        raise ConfigError(f"variant {variant.id} records no image size", "pass the size it serves at: --imgsz 640")
    return ServerConfig(
        variant=variant.name,
        variant_id=variant.id,
        runtime=str(runtime_for(artifact)),
        imgsz=int(imgsz),
        port=config.port,
        threads=config.threads,
        precision=config.precision,
        names=class_names(artifact),
        limits=config.limits,
    )


def _k8s_name(variant) -> str:
    """A DNS-1035 label (Services and KServe's derived names need one): letters first, at most 40 characters."""
    slug = re.sub(r"[^a-z0-9]+", "-", variant.name.lower()).strip("-")
    return f"workbench-{variant.id}-{slug}"[:40].rstrip("-")


def _values(variant, server: ServerConfig, config: BundleConfig, *, signer: str) -> dict:
    """Everything the templates name."""
    name = _k8s_name(variant)
    image = config.image or f"{name}:{(variant.sha256 or 'latest')[:12]}"
    labels = {"app.kubernetes.io/name": "workbench-serve", "app.kubernetes.io/instance": name}
    health = (
        "import ssl, sys, urllib.request\n"
        "c = ssl.create_default_context(); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE\n"
        f"sys.exit(urllib.request.urlopen('https://127.0.0.1:{server.port}/v2/health/live', context=c, timeout=4)"
        ".status != 200)"
    )
    copy_keys = ["install", "-m", "0600", f"{KEYS_SECRET_DIR}/keys.json", server.keys]
    return {
        **{k: str(v) for k, v in asdict(config).items() if k not in ("limits", "image", "base_image")},
        "variant": variant.name, "variant_id": str(variant.id), "runtime": server.runtime, "imgsz": str(server.imgsz),
        "made": datetime.now(UTC).isoformat(timespec="seconds"), "signer": signer, "name": name, "image": image,
        "base_image": config.base_image or f"python:{platform.python_version()}-slim-bookworm",
        "uid": str(UID), "gid": str(GID), "port": str(server.port), "key_env": server.key_env,
        "tls_dir": TLS_DIR, "keys_dir": str(PurePosixPath(server.keys).parent), "state_dir": STATE_DIR,
        "keys_secret_dir": KEYS_SECRET_DIR, "tls_secret": f"{name}-tls", "keys_secret": f"{name}-api-keys",
        "model_key_secret": f"{name}-model-key", "labels": json.dumps(labels),
        "command": json.dumps(serve_command()), "command_text": " ".join(serve_command()),
        "copy_keys": json.dumps(copy_keys), "healthcheck": json.dumps(["python", "-c", health]),
        "served": " ".join(SERVED), "allow": "\n".join(f"!{n}" for n in SERVED),
    }  # fmt: skip


def server_requirements(runtime: str) -> list[str]:
    """`name==version` for every package the server needs with `runtime`, and theirs, as installed here.

    Raises:
        ConfigError: a package the server needs is not installed here (so no version to pin).
    """
    import importlib.metadata as metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    roots = [*SERVER_PACKAGES, *RUNTIME_PACKAGES[runtime]]
    pins, todo = {}, [(name, True) for name in roots] + [(name, False) for name in OPTIONAL_PACKAGES]
    while todo:
        name, needed = todo.pop()
        key = canonicalize_name(name)
        if key in pins:
            continue
        dist = _installed(metadata, name)
        if dist is None:
            if needed:
                raise ConfigError(f"{name} is not installed: no version to pin", "pip install -e '.[serve]'")
            continue  # a dependency of a dependency that is not installed: pip resolves it in the build
        pins[key] = f"{name if name in _SAME_AS else dist.metadata['Name']}=={dist.version}"
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append((req.name, False))
    return sorted(pins.values(), key=str.lower)


def _installed(metadata, name: str):
    for candidate in filter(None, (name, _SAME_AS.get(name))):
        try:
            return metadata.distribution(candidate)
        except metadata.PackageNotFoundError:
            continue
    return None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private_file(path, text.encode(), 0o644)


def _write_public_key(path: Path, private) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    write_private_file(path, pem, 0o644)


def _copy_source(dest: Path) -> None:
    """The workbench package the server runs, without caches, weights, widgets or staging leftovers."""
    source = Path(__file__).resolve().parents[3]  # workbench/, above core/serve/bundle/
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pt", ".*", "widgets")
    shutil.copytree(source, dest, ignore=skip)


def _write_templates(folder: Path, values: dict) -> None:
    import yaml

    for name, target in (("Dockerfile", "Dockerfile"), ("dockerignore", ".dockerignore"), ("README.md", "README.md")):
        _write(folder / target, Template((_TEMPLATES / name).read_text()).substitute(values))
    for name in K8S_FILES:
        text = Template((_TEMPLATES / "k8s" / name).read_text()).substitute(values)
        if not all(isinstance(doc, dict) for doc in yaml.safe_load_all(text)):
            raise BundleError(f"k8s/{name} did not render to manifests", "report this: a template is broken")
        _write(folder / "k8s" / name, text)


def _spellings(key: bytes) -> tuple[bytes, ...]:
    """How a key is usually written down: raw, hex (either case), base64."""
    return key, key.hex().encode(), key.hex().upper().encode(), base64.b64encode(key)


def _check_no_secrets(folder: Path, model_key: bytes, private) -> None:
    """Defence in depth: no file holds the model key or the private signing key, in any usual spelling."""
    from cryptography.hazmat.primitives import serialization

    bare = serialization.NoEncryption()
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, bare)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, bare)
    secrets = [s for k in (model_key, raw) for s in _spellings(k)]
    secrets.append(pem.splitlines()[1])  # the first line of the PEM body
    for path in folder.rglob("*"):
        if path.is_file() and any(s in path.read_bytes() for s in secrets):
            raise BundleError(f"{path.name} holds a secret", "report this: nothing was written at the bundle's place")
