"""A deployment bundle's layout and server config: the names of its files, the container's paths and user, the
`server.yaml` a `ServerConfig` writes and reads back, and the command that serves the bundle."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath

from ...errors import ConfigError, check_imgsz
from ...models.in_memory import IN_MEMORY_RUNTIMES
from ...models.runners import RuntimeOptions
from ..service.limits import Limits
from . import protect

SERVER_FORMAT = "deploy-workbench server config"
MANIFEST, SIGNATURE = "bundle-manifest.json", "bundle-manifest.sig"
SERVER_CONFIG, PUBLIC_KEY, MODEL = "server.yaml", "signing-key.pub.pem", "model"
SERVED = (MANIFEST, SIGNATURE, SERVER_CONFIG, PUBLIC_KEY)  # with model/, what the image's /app/bundle holds
CONTAINER_BUNDLE = "/app/bundle"
UID = GID = 10001
PORT = 8443
TLS_DIR, KEYS_DIR, STATE_DIR = "/var/run/secrets/workbench/tls", "/var/run/workbench/keys", "/var/lib/workbench"
KEYS_SECRET_DIR = "/var/run/secrets/workbench/api-keys"
OVERRIDES = ("host", "port", "certfile", "keyfile", "keys", "audit", "public_key", "model_key_file")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


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
        from ..service.server import ServeConfig

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


def server_yaml(server: ServerConfig) -> str:
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
