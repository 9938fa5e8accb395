"""The serving commands of `workbench`: `serve` (a variant, or a deployment bundle, behind the inference service)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from .arguments import _positive, _seconds

KEYS_NAME = "keys.json"
AUDIT_NAME = "audit.jsonl"
ADD_KEY = "workbench keys add NAME --role inferrer"


def _port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535, got {number}")
    return number


def _count(value: str) -> int:
    """A whole number >= 0."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {number}")
    return number


def _mebibytes(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of MiB, got {value!r}") from None
    if not 0 < number <= 4096:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 4096 MiB, got {value}")
    return number


def _per_second(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected requests per second, got {value!r}") from None
    if not 0 < number < 1e6:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return number


def _workspace_root(args) -> Path:
    from ..core.store.workspace import default_workspace

    return Path(args.workspace).expanduser().resolve() if args.workspace else default_workspace()


def _artifact(args, root: Path) -> tuple[int | None, Path]:
    """The variant id (None for a path given directly) and its artifact, both checked to exist."""
    from ..core.errors import ConfigError
    from ..core.store.workspace import LEDGER_NAME, Workspace

    given = str(args.variant)
    if not given.isdigit():
        path = Path(given).expanduser()
        if not path.exists():
            raise ConfigError(f"no variant {given!r}: neither a variant id nor an artifact here", _pick_fix(root))
        return None, path.resolve()
    if not (root / LEDGER_NAME).is_file():
        raise ConfigError(f"no workspace ledger in {root}", "pass --workspace DIR of the workspace the variant is in")
    workspace = Workspace(root)
    if not any(v.id == int(given) for v in workspace.ledger.variants()):
        raise ConfigError(f"no variant {given} in the workspace {root}", _pick_fix(root))
    variant = workspace.variant(int(given))
    if not variant.path or not (root / variant.path).exists():
        raise ConfigError(
            f"variant {given} ({variant.name}) has no artifact file in {root}",
            "serve a variant that has one (an export), or export this one first",
        )
    return variant.id, root / variant.path


def _pick_fix(root: Path) -> str:
    return f"pass the id of a variant recorded in {root} (with --workspace DIR for another one), or an artifact path"


def _limits(args):
    from ..core.serve.limits import MIB, Limits

    defaults = Limits()
    rate = args.rate if args.rate is not None else defaults.rate_per_s
    burst = args.burst or (max(1, math.ceil(2 * args.rate)) if args.rate is not None else defaults.burst)
    return Limits(
        max_body_bytes=int(args.max_body_mb * MIB) if args.max_body_mb else defaults.max_body_bytes,
        max_pixels=args.max_pixels or defaults.max_pixels,
        rate_per_s=rate,
        burst=burst,
        timeout_s=args.timeout or defaults.timeout_s,
        max_queue=defaults.max_queue if args.max_queue is None else args.max_queue,
    )


def _tls(args, root: Path) -> tuple[Path | None, Path | None, Path | None]:
    """(certificate, key, CA clients trust): the user's pair, a local one (--tls alone) or none."""
    if not (args.tls or args.certfile or args.keyfile):
        return None, None, None
    from ..core.serve.tls import certificate_for

    paths = certificate_for(root / "serve" / "tls", args.certfile, args.keyfile)
    return paths.certfile, paths.keyfile, paths.ca_certfile


def _key_store(path: Path):
    """The key store at `path`, refused when it holds no active key (the service would answer nobody)."""
    from ..core.errors import ConfigError
    from ..core.serve.keys import KeyStore

    store = KeyStore(path)
    if not any(k.status == "active" for k in store.list()):
        where = f" --store {path}" if path.name != KEYS_NAME else ""
        raise ConfigError(
            f"no active API key in {path}: the service would refuse every request",
            f"add one: {ADD_KEY}{where}  (then pass it as 'Authorization: Bearer <key>')",
        )
    return store


def _serve(args) -> int:
    from ..core.errors import ConfigError

    if args.bundle is not None:
        return _serve_bundle(args)
    if args.variant is None:
        raise ConfigError("nothing to serve", "pass a VARIANT (an id or an artifact path), or --bundle DIR")
    if args.public_key or args.model_key_file:
        raise ConfigError("--public-key and --model-key-file are options of a bundle", "add --bundle DIR, or drop them")
    args.host = args.host or "127.0.0.1"
    args.port = args.port or 8000
    return _serve_variant(args)


def _serve_variant(args) -> int:
    from ..core.serve.model import check_model_name
    from ..core.serve.server import ServeConfig

    root = _workspace_root(args)
    limits = _limits(args)
    if args.name is not None:
        check_model_name(args.name)
    variant_id, artifact = _artifact(args, root)
    keys = Path(args.keys).expanduser().resolve() if args.keys else root / "serve" / KEYS_NAME
    audit_path = Path(args.audit).expanduser().resolve() if args.audit else keys.with_name(AUDIT_NAME)
    store = _key_store(keys)
    certfile, keyfile, ca = _tls(args, root)
    config = ServeConfig(
        host=args.host,
        port=args.port,
        certfile=certfile,
        keyfile=keyfile,
        limits=limits,
        keys=keys,
        audit=audit_path,
        plaintext_remote=args.allow_plaintext,
    )
    return _start(args, config, store, variant_id, artifact, root, ca)


def _serve_bundle(args) -> int:
    """`workbench serve --bundle DIR`: the verified bundle's model and `server.yaml`, some of it overridden."""
    from ..core.errors import ConfigError
    from ..core.serve.bundle import open_bundle
    from ..core.serve.protect import load_key

    clashes = [flag for flag, given in (("VARIANT", args.variant), ("--workspace", args.workspace),
                                        ("--tls", args.tls), ("--name", args.name)) if given]  # fmt: skip
    if clashes:
        raise ConfigError(f"{', '.join(clashes)} cannot go with --bundle", "drop them: server.yaml says them")
    key = load_key(key_file=args.model_key_file)
    overrides = {k: getattr(args, k) for k in ("host", "port", "certfile", "keyfile", "keys", "audit")}
    model, config = open_bundle(args.bundle, key, args.public_key, **overrides)
    store = _key_store(Path(config.keys))
    return _run(model, config, store, f"the bundle {args.bundle}", None)


def _start(args, config, store, variant_id, artifact, root, ca) -> int:
    """Open the model (everything is checked by now), then serve it until stopped."""
    from ..core.serve.model import ServedModel
    from ..core.store.workspace import Workspace

    options = {"threads": args.threads, "workers": args.workers}
    if variant_id is None:
        model = ServedModel.open(artifact, name=args.name or "model", **options)
    else:
        model = ServedModel.from_variant(Workspace(root), variant_id, name=args.name, **options)
    return _run(model, config, store, artifact, ca)


def _run(model, config, store, source, ca) -> int:
    """Serve `model` with the guard over `store`, the audit log and Prometheus metrics until stopped."""
    from ..core.serve.audit import AuditLog
    from ..core.serve.guard import Guard
    from ..core.serve.monitor import Metrics
    from ..core.serve.server import run_server

    scheme = "https" if config.tls else "http"
    print(f"serving {model.describe()}\n  from {source}")
    print(f"  at {scheme}://{config.host}:{config.port}/v2, POST /v1/detect, GET /metrics (Ctrl-C stops)")
    print(f"  keys {config.keys}\n  audit {config.audit}" + (f"\n  clients trust the CA {ca}" if ca else ""))
    metrics = Metrics(model.name)
    with AuditLog(config.audit) as audit:
        try:
            run_server(config, model, Guard(store), audit, metrics=metrics)
        except KeyboardInterrupt:  # uvicorn shut down gracefully first, then passed the signal on
            pass
    print("stopped: every request answered was audited")
    return 0


def add_serve_parsers(sub) -> None:
    """Register `workbench serve`."""
    serve = sub.add_parser(
        "serve",
        help="serve a variant: Open Inference Protocol v2 and POST /v1/detect, API keys, audit log, limits",
    )
    serve.add_argument("variant", nargs="?", default=None, help="a workspace variant id (or an artifact's path)")
    serve.add_argument("--bundle", default=None, help="serve a deployment bundle (`workbench bundle`) instead")
    serve.add_argument("--public-key", default=None, help="with --bundle: the signer's key (default: the bundle's)")
    serve.add_argument("--model-key-file", default=None, help="with --bundle: else $WORKBENCH_MODEL_KEY")
    serve.add_argument("--workspace", default=None, help="default: $WORKBENCH_WORKSPACE or ./workbench-runs")
    serve.add_argument("--name", default=None, help="the model's name in URLs (default variant-<id>)")
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1: this machine)")
    serve.add_argument("--port", type=_port, default=None, help="default 8000")
    serve.add_argument("--tls", action="store_true", help="serve HTTPS (a local CA and certificate unless given)")
    serve.add_argument("--certfile", default=None, help="your PEM certificate (implies --tls)")
    serve.add_argument("--keyfile", default=None, help="its PEM key")
    serve.add_argument("--allow-plaintext", action="store_true", help="allow a non-loopback --host without TLS")
    serve.add_argument("--keys", default=None, help="the key store (default <workspace>/serve/keys.json)")
    serve.add_argument("--audit", default=None, help="the audit log (default audit.jsonl beside the key store)")
    serve.add_argument("--max-body-mb", type=_mebibytes, default=None, help="largest request body, MiB (default 16)")
    serve.add_argument("--max-pixels", type=_positive, default=None, help="most pixels an image may declare")
    serve.add_argument("--rate", type=_per_second, default=None, help="requests per second per key (default 50)")
    serve.add_argument("--burst", type=_positive, default=None, help="requests at once per key (default 2 x rate)")
    serve.add_argument("--timeout", type=_seconds, default=None, help="seconds before a 504 (default 10)")
    serve.add_argument("--max-queue", type=_count, default=None, help="requests waiting beyond the workers (32)")
    serve.add_argument("--threads", type=_positive, default=None, help="inference threads (default: every core)")
    serve.add_argument("--workers", type=_positive, default=None, help="concurrent requests (OpenVINO; default: its)")
    serve.set_defaults(run=_serve)
