"""The serving commands of `workbench`: `serve` (a variant, or a deployment bundle, behind the inference service)."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .arguments import _count, _fraction, _mebibytes, _per_second, _port, _positive, _seconds

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

KEYS_NAME = "keys.json"
AUDIT_NAME = "audit.jsonl"
ADD_KEY = "workbench keys add NAME --role inferrer"
DRIFT_WINDOW, SAMPLE_RATE, SAMPLE_MAX = 200, 0.01, 1000


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
    from ..core.serve.service.limits import MIB, Limits

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
    from ..core.serve.security.tls import certificate_for

    paths = certificate_for(root / "serve" / "tls", args.certfile, args.keyfile)
    return paths.certfile, paths.keyfile, paths.ca_certfile


def _key_store(path: Path):
    """The key store at `path`, refused when it holds no active key (the service would answer nobody)."""
    from ..core.errors import ConfigError
    from ..core.serve.security.keys import KeyStore

    store = KeyStore(path)
    if not any(k.status == "active" for k in store.list()):
        where = f" --store {path}" if path.name != KEYS_NAME else ""
        raise ConfigError(
            f"no active API key in {path}: the service would refuse every request",
            f"add one: {ADD_KEY}{where}  (then pass it as 'Authorization: Bearer <key>')",
        )
    return store


def _check_watching(args) -> None:
    """The drift and sampling flags agree with each other (checked before anything is opened or written)."""
    from ..core.errors import ConfigError
    from ..core.serve.monitoring.drift import DriftThresholds

    if args.drift is False and (args.drift_window is not None or args.drift_data):
        raise ConfigError("--drift-window and --drift-data go with drift on", "drop --no-drift, or drop them")
    least = DriftThresholds().min_images
    if args.drift_window is not None and args.drift_window < least:
        raise ConfigError(f"--drift-window must be at least {least} images, got {args.drift_window}", "use e.g. 200")
    if args.sample_dir is None and (args.sample_rate is not None or args.sample_max is not None):
        raise ConfigError("--sample-rate and --sample-max go with --sample-dir", "add --sample-dir DIR, or drop them")
    if args.sample_dir is not None:
        folder = Path(args.sample_dir).expanduser().resolve()
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if existing == folder and not folder.is_dir():
            raise ConfigError(f"--sample-dir {folder} is a file", "pass a folder (made if missing) for the samples")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"--sample-dir {folder} cannot be written here ({existing})", "pass a writable folder")
        args.sample_dir = folder


def _drift_data(args, root: Path | None, variant_id: int | None) -> Path | None:
    """The data YAML of the drift reference: --drift-data, else the variant's recorded one; None: no drift."""
    from ..core.errors import ConfigError
    from ..core.serve.monitoring.reference import NO_DATA_FIX, drift_data

    if args.drift is False:
        return None
    workspace = None
    if variant_id is not None:
        from ..core.store.workspace import Workspace

        workspace = Workspace(root)
    data = drift_data(workspace, variant_id, args.drift_data)
    if data is None and (args.drift or args.drift_window is not None):  # asked for, not just the default
        what = f"variant {variant_id}" if variant_id is not None else "a model served without a workspace variant"
        raise ConfigError(f"--drift needs validation data, and none is known for {what}", NO_DATA_FIX)
    if data is not None:
        from ..core.data.checks import list_images

        list_images(data, "val")  # a data YAML without a readable val split is named now, not after the model opened
    return data


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
    from ..core.serve.service.model import check_model_name
    from ..core.serve.service.server import ServeConfig

    root = _workspace_root(args)
    limits = _limits(args)
    _check_watching(args)
    if args.name is not None:
        check_model_name(args.name)
    variant_id, artifact = _artifact(args, root)
    data = _drift_data(args, root, variant_id)
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
    return _start(args, config, store, (variant_id, artifact, root, data), ca)


def _serve_bundle(args) -> int:
    """`workbench serve --bundle DIR`: the verified bundle's model and `server.yaml`, some of it overridden."""
    from ..core.errors import ConfigError
    from ..core.serve.bundle.load import open_bundle
    from ..core.serve.bundle.protect import load_key

    clashes = [flag for flag, given in (("VARIANT", args.variant), ("--workspace", args.workspace),
                                        ("--tls", args.tls), ("--name", args.name)) if given]  # fmt: skip
    if clashes:
        raise ConfigError(f"{', '.join(clashes)} cannot go with --bundle", "drop them: server.yaml says them")
    _check_watching(args)
    data = _drift_data(args, None, None)
    key = load_key(key_file=args.model_key_file)
    overrides = {k: getattr(args, k) for k in ("host", "port", "certfile", "keyfile", "keys", "audit")}
    model, config = open_bundle(args.bundle, key, args.public_key, **overrides)
    store = _key_store(Path(config.keys))
    metrics, notes = _watch(args, model, data, None, None)
    return _run(model, config, store, f"the bundle {args.bundle}", None, metrics, notes)


def _start(args, config, store, what, ca) -> int:
    """Open the model (everything is checked by now), watch it as asked, then serve it until stopped."""
    from ..core.serve.service.loader import workspace_loader
    from ..core.serve.service.model import ServedModel
    from ..core.store.workspace import Workspace

    variant_id, artifact, root, data = what
    options = {"threads": args.threads, "workers": args.workers}
    if variant_id is None:
        model = ServedModel.open(artifact, name=args.name or "model", **options)
        metrics, notes = _watch(args, model, data, None, None)
        return _run(model, config, store, artifact, ca, metrics, notes)
    workspace = Workspace(root)
    model = ServedModel.from_variant(workspace, variant_id, name=args.name, **options)
    metrics, notes = _watch(args, model, data, workspace, variant_id)
    window = args.drift_window or DRIFT_WINDOW
    loader = workspace_loader(workspace, drift=data is not None, data=args.drift_data, window=window, **options)
    return _run(model, config, store, artifact, ca, metrics, notes, loader)


def _watch(args, model, data, workspace: Workspace, variant_id):
    """The service's `Metrics`, with the drift monitor (`data`: its reference's data YAML) and the payload sampler
    asked for, and a line on each."""
    from ..core.serve.monitoring.metrics import Metrics, Sampler
    from ..core.serve.monitoring.reference import drift_monitor

    monitor, notes = None, []
    if data is not None:
        monitor = drift_monitor(workspace, variant_id, model, data=data, window=args.drift_window or DRIFT_WINDOW)
        where = f", alerts in the ledger of variant {variant_id}" if variant_id is not None else ""
        notes.append(f"  drift: windows of {monitor.window} images against {monitor.reference.source}{where}")
    else:
        unknown = "" if variant_id is None else f"no val data recorded for variant {variant_id}; "
        why = "--no-drift" if args.drift is False else f"{unknown}--drift-data DATA_YAML turns it on"
        notes.append(f"  drift: off ({why})")
    sampler = None
    if args.sample_dir is not None:
        rate, most = args.sample_rate or SAMPLE_RATE, args.sample_max or SAMPLE_MAX
        sampler = Sampler(args.sample_dir, rate, most)
        notes.append(f"  sampling {rate:.2%} of the images into {args.sample_dir} (at most {most}, 7 days)")
    return Metrics(model.name, drift=monitor, sampler=sampler, workspace=workspace, variant_id=variant_id), notes


def _run(model, config, store, source, ca, metrics, notes, loader=None) -> int:
    """Serve `model` with the guard over `store`, the audit log and `metrics` until stopped; `loader`: how the
    admin endpoint opens another variant (None: it cannot switch)."""
    from ..core.serve.security.audit import AuditLog
    from ..core.serve.security.guard import Guard
    from ..core.serve.service.server import run_server

    scheme = "https" if config.tls else "http"
    print(f"serving {model.describe()}\n  from {source}")
    print(f"  at {scheme}://{config.host}:{config.port}/v2, POST /v1/detect, GET /metrics (Ctrl-C stops)")
    print(f"  keys {config.keys}\n  audit {config.audit}" + (f"\n  clients trust the CA {ca}" if ca else ""))
    print("\n".join(notes))
    with AuditLog(config.audit) as audit:
        try:
            run_server(config, model, Guard(store), audit, metrics=metrics, loader=loader)  # PUT /v1/admin/model
        except KeyboardInterrupt:  # uvicorn shut down gracefully first, then passed the signal on
            pass
        finally:
            metrics.close()  # what was queued is watched (a drifted window still reaches the ledger)
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
    serve.add_argument(
        "--drift",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="watch production images and detections for drift (default: on for a workspace variant whose val "
        "data is recorded, else off)",
    )
    serve.add_argument("--drift-window", type=_positive, default=None, help="images per drift check (default 200)")
    serve.add_argument("--drift-data", default=None, help="the data YAML whose val images make the drift reference")
    serve.add_argument("--sample-dir", default=None, help="keep a random share of the served images here (opt-in)")
    serve.add_argument("--sample-rate", type=_fraction, default=None, help="with --sample-dir: the share (0.01)")
    serve.add_argument("--sample-max", type=_positive, default=None, help="with --sample-dir: most kept (1000)")
    serve.set_defaults(run=_serve)
