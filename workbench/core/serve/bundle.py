"""Deployment bundles: a variant's encrypted, signed model with its server config, a Dockerfile and Kubernetes
manifests, in one signed folder that builds an image and starts the service (`workbench bundle VARIANT OUT`).

The folder: `model/` (`protect.protect`: every file AES-256-GCM encrypted, its manifest signed), the public key
`signing-key.pub.pem`, `server.yaml` (a `ServerConfig`: no secret), `requirements.txt` (the server's packages
pinned to the versions installed here), `src/` (the workbench code, no weights), `Dockerfile`, `.dockerignore`,
`k8s/` and `README.md`, then `bundle-manifest.json` (every file's sha256) and its Ed25519 signature. The model key
and the private signing key are never written into it: the key comes at run time from `$WORKBENCH_MODEL_KEY` or a
0600 key file, the private key stays where the bundle was made. `load_bundle` is what `workbench serve --bundle`
calls: it checks the signature and the served files, then verifies, decrypts and opens the model in memory.

`load_bundle` trusts the public key it is given; without one it takes the bundle's own, which catches a damaged
or altered file but not someone who replaced the whole bundle, key included: pass the signer's key from elsewhere
(a mounted ConfigMap, `--public-key`) where that matters.
"""

from __future__ import annotations

import base64
import json
import platform
import re
import shutil
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from string import Template

from ..errors import ConfigError, WorkbenchError, check_imgsz
from ..models.in_memory import IN_MEMORY_RUNTIMES
from ..models.runners import Runner, RuntimeOptions, runtime_for
from ..store.atomic import staged
from ..store.records import Format
from . import protect
from .limits import Limits
from .model import class_names
from .tls import write_private_file

BUNDLE_FORMAT, SERVER_FORMAT = "deploy-workbench deployment bundle", "deploy-workbench server config"
MANIFEST, SIGNATURE = "bundle-manifest.json", "bundle-manifest.sig"
SERVER_CONFIG, PUBLIC_KEY, MODEL = "server.yaml", "signing-key.pub.pem", "model"
SERVED = (MANIFEST, SIGNATURE, SERVER_CONFIG, PUBLIC_KEY)  # with model/, what the image's /app/bundle holds
K8S_FILES = ("deployment.yaml", "service.yaml", "hpa.yaml", "secrets.template.yaml", "inferenceservice.yaml")
CONTAINER_BUNDLE = "/app/bundle"
UID = GID = 10001
PORT = 8443
TLS_DIR, KEYS_DIR, STATE_DIR = "/var/run/secrets/workbench/tls", "/var/run/workbench/keys", "/var/lib/workbench"
KEYS_SECRET_DIR = "/var/run/secrets/workbench/api-keys"
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
OVERRIDES = ("host", "port", "certfile", "keyfile", "keys", "audit", "public_key", "model_key_file")
_TEMPLATES = Path(__file__).with_name("templates")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class BundleError(WorkbenchError):
    """A bundle could not be made safely (a secret found in it): nothing was left at its place."""


@dataclass(frozen=True)
class ServerConfig:
    """The bundle's `server.yaml`: what to serve and how; paths are the container's (model paths the bundle's)."""

    variant: str
    variant_id: int
    runtime: str
    imgsz: int
    host: str = "0.0.0.0"  # inside the container: the pod's address, TLS required
    port: int = PORT
    tls: bool = True
    certfile: str = f"{TLS_DIR}/tls.crt"
    keyfile: str = f"{TLS_DIR}/tls.key"
    keys: str = f"{KEYS_DIR}/keys.json"
    audit: str = f"{STATE_DIR}/audit.jsonl"
    model: str = MODEL  # relative to the bundle
    public_key: str = PUBLIC_KEY  # relative to the bundle
    key_env: str = protect.KEY_ENV
    threads: int | None = None
    precision: str | None = None
    names: dict[int, str] = field(default_factory=dict)  # class names (a decrypted model has no file to read them)
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self):
        check_imgsz(self.imgsz)
        if self.runtime not in IN_MEMORY_RUNTIMES:
            raise ConfigError(f"runtime {self.runtime!r} cannot serve a protected model", "export to ONNX or OpenVINO")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be 1..65535, got {self.port}", "use e.g. 8443")
        if not self.tls and self.host not in _LOOPBACK:
            raise ConfigError(f"the server listens on {self.host} without TLS", "keep tls: true off loopback")
        for name in (self.model, self.public_key):
            if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
                raise ConfigError(f"{name!r} must be a path inside the bundle", f"use e.g. {MODEL!r}")
        self.runtime_options()  # checks threads and precision

    def runtime_options(self) -> RuntimeOptions:
        return RuntimeOptions(threads=self.threads, precision=self.precision)

    def serve_config(self, **overrides):
        """The server's `ServeConfig` (where it listens, TLS, limits, key store, audit log), `overrides` applied
        (host, port, certfile, keyfile, keys, audit: what `serve_command`'s flags replace)."""
        from .server import ServeConfig

        unknown = sorted(set(overrides) - {"host", "port", "certfile", "keyfile", "keys", "audit"})
        if unknown:
            raise ConfigError(
                f"cannot override {unknown} of a bundle's server", "override host, port, TLS, keys, audit"
            )
        given = {k: v for k, v in overrides.items() if v is not None}
        tls = {"certfile": self.certfile, "keyfile": self.keyfile} if self.tls else {}
        merged = {"host": self.host, "port": self.port, **tls, "keys": self.keys, "audit": self.audit, **given}
        paths = {k: Path(merged[k]) for k in ("certfile", "keyfile", "keys", "audit") if merged.get(k) is not None}
        return ServeConfig(host=merged["host"], port=int(merged["port"]), limits=self.limits, **paths)

    def to_dict(self) -> dict:
        return {"format": SERVER_FORMAT, "version": 1, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> ServerConfig:
        """The config a `to_dict` wrote; an unknown or missing key is refused, not ignored."""
        data = dict(data or {})
        if data.pop("format", None) != SERVER_FORMAT or data.pop("version", None) != 1:
            raise ConfigError(f"not a {SERVER_FORMAT} (version 1)", "make the bundle again: workbench bundle")
        known = {f.name for f in fields(cls)}
        if set(data) - known:
            raise ConfigError(f"unknown server config keys {sorted(set(data) - known)}", f"use only {sorted(known)}")
        limits, allowed = data.pop("limits", None) or {}, [f.name for f in fields(Limits)]
        if not isinstance(limits, dict) or set(limits) - set(allowed):
            raise ConfigError(f"unknown limits {limits}", f"use only {allowed}")
        try:
            return cls(**data, limits=Limits(**limits))
        except TypeError as exc:
            raise ConfigError(f"server config: {exc}", "make the bundle again: workbench bundle") from None


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
    workspace, variant_id: int, out: Path | str, *, model_key: bytes, signing_key_folder, config=BundleConfig()
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
    from ..store.workspace import Workspace

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
        _write(staging / SERVER_CONFIG, _server_yaml(server))
        _write(staging / "requirements.txt", "\n".join(requirements) + "\n")
        _copy_source(staging / "src" / "workbench")
        _write_templates(staging, values)
        _sign(staging, private, {"variant_id": variant.id, "variant": variant.name, "runtime": server.runtime})
        _check_no_secrets(staging, model_key, private)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    return BundleReport(
        out, variant.id, variant.name, server.runtime, values["image"], values["signer"], serve_command(), files
    )


def _open_workspace(root):
    from ..store.workspace import Workspace

    root = Path(root).expanduser().resolve()
    if not (root / "workbench.db").is_file():
        raise ConfigError(f"no workspace at {root} (no workbench.db)", "pass --workspace, the folder of your study")
    return Workspace(root)


def _bundled_variant(workspace, variant_id: int):
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


def serve_command(bundle_dir: Path | str = CONTAINER_BUNDLE, *, python: str = "python", **overrides) -> list[str]:
    """The command that serves a bundle: the container's CMD with no overrides.

    Args:
        bundle_dir: the bundle folder (in the image: /app/bundle).
        python: the interpreter (tests pass `sys.executable`).
        overrides: flags that replace what `server.yaml` says: host, port, certfile, keyfile, keys, audit,
            public_key, model_key_file (e.g. a test on 127.0.0.1 with its own certificate).
    """
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise ConfigError(f"serve_command cannot override {unknown}", f"choose from {OVERRIDES}")
    argv = [python, "-m", "workbench", "serve", "--bundle", str(bundle_dir)]
    for name in OVERRIDES:  # a fixed order: the same overrides give the same command
        if overrides.get(name) is not None:
            argv += [f"--{name.replace('_', '-')}", str(overrides[name])]
    return argv


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


def _server_yaml(server: ServerConfig) -> str:
    import yaml

    head = (
        f"# Server config of a deployment bundle, read by `{' '.join(serve_command())}`.\n"
        f"# No secret: the model key comes from ${server.key_env} or a key file, TLS and API keys from these paths.\n"
    )
    return head + yaml.safe_dump(server.to_dict(), sort_keys=False)


def read_server_config(path: Path | str) -> ServerConfig:
    """A `server.yaml` as a `ServerConfig` (refused when malformed or unknown)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the server config {path}: {exc}", "make the bundle again") from None
    return ServerConfig.from_dict(data if isinstance(data, dict) else {})


def _copy_source(dest: Path) -> None:
    """The workbench package the server runs, without caches, weights, widgets or staging leftovers."""
    source = Path(__file__).resolve().parents[2]
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


def _digests(folder: Path) -> dict:
    return {
        p.relative_to(folder).as_posix(): protect.digest(p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).as_posix() not in (MANIFEST, SIGNATURE)
    }


def _sign(folder: Path, private, about: dict) -> None:
    manifest = {
        "format": BUNDLE_FORMAT,
        "version": 1,
        "signed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "signer": protect.fingerprint(private.public_key()),
        **about,
        "served": [SERVER_CONFIG, PUBLIC_KEY],  # what the server checks at start (model/ has its own manifest)
        "files": _digests(folder),
    }
    text = json.dumps(manifest, indent=2, sort_keys=True).encode()
    write_private_file(folder / MANIFEST, text, 0o644)
    write_private_file(folder / SIGNATURE, base64.b64encode(private.sign(text)) + b"\n", 0o644)


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


def verify_bundle(bundle_dir: Path | str, public_key=None) -> dict:
    """Check the bundle's signature and that every file is there, unchanged, and none added; returns its manifest.

    Raises:
        SignatureError: unsigned, signed by another key, or a file altered, missing or added.
    """
    folder = Path(bundle_dir)
    manifest = _verified_manifest(folder, public_key)
    found, expected = _digests(folder), manifest["files"]
    changed = sorted(n for n in set(found) | set(expected) if found.get(n) != expected.get(n))
    if changed:
        raise protect.SignatureError(f"{folder.name} differs from its signed manifest: {changed[:8]}", protect.AGAIN)
    return manifest


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
    manifest = _verified_manifest(folder, public)
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
    from .model import ServedModel

    runner, server = load_bundle(bundle_dir, model_key, public_key)
    config = server.serve_config(**overrides)
    name, version = f"variant-{server.variant_id}", str(server.variant_id)
    model = ServedModel.from_runner(runner, imgsz=server.imgsz, name=name, version=version, names=server.names)
    return model, config


def _verified_manifest(folder: Path, public_key) -> dict:
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
