"""The service's administration commands of `workbench`: `keys add|list|revoke` and `audit verify`."""

from __future__ import annotations

import getpass
import os
import sys
import time
from pathlib import Path

from .arguments import _positive

STORE_NAME = "keys.json"
AUDIT_NAME = "audit.jsonl"


def _store_path(args) -> Path:
    """`--store`, else `<workspace>/serve/keys.json`."""
    from ..core.store.workspace import default_workspace

    if args.store:
        return Path(args.store).expanduser().resolve()
    workspace = Path(args.workspace).expanduser().resolve() if args.workspace else default_workspace()
    return workspace / "serve" / STORE_NAME


def _audit_path(args) -> Path:
    """`--audit`, else `audit.jsonl` beside the key store (so `<workspace>/serve/audit.jsonl` by default)."""
    if getattr(args, "audit", None):
        return Path(args.audit).expanduser().resolve()
    return _store_path(args).with_name(AUDIT_NAME)


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError, ImportError):  # no name for this uid (a container); Windows without USERNAME
        return f"cli:uid{os.getuid()}" if hasattr(os, "getuid") else "cli:unknown"


def _audited(args, command: str, act):
    """Run a key change as an audited admin action: the log is opened first (a damaged log refuses the change),
    the outcome is logged whether the change succeeds or fails."""
    from ..core.serve.security.audit import AuditLog
    from ..core.serve.security.keys import KeyStore

    store = KeyStore(_store_path(args))
    record = {"who": _operator(), "action": "manage_keys", "method": "CLI", "client": "local"}
    start = time.perf_counter()
    with AuditLog(_audit_path(args)) as log:
        try:
            result, fields = act(store)
        except Exception as exc:
            took = round((time.perf_counter() - start) * 1000, 3)
            log.append({**record, "path": command, "status": 1, "outcome": "error", "latency_ms": took,
                        "reason": str(exc).splitlines()[0][:200]})  # fmt: skip
            raise
        took = round((time.perf_counter() - start) * 1000, 3)
        log.append({**record, "path": command, "status": 0, "outcome": "ok", "latency_ms": took, **fields})
    return result


def _keys_add(args) -> int:
    def act(store):
        new = store.add(args.name, args.role, expires_days=args.expires_days)
        return new, {"name": new.name, "target": new.key_id, "role": new.role.value}

    new = _audited(args, "keys add", act)
    print(f"key id:   {new.key_id}\nname:     {new.name}\nrole:     {new.role.value}\nexpires:  {new.expires}")
    print(f"key:      {new.key}")
    if new.totp_secret:
        print(f"TOTP secret: {new.totp_secret}\nTOTP URI:    {new.totp_uri}")
        print("  add it to an authenticator app; admin requests need its code in the X-TOTP header")
    shown = "key and TOTP secret are" if new.totp_secret else "key is"
    print(f"warning: the {shown} shown once and never stored in clear: copy them now", file=sys.stderr)
    return 0


def _keys_list(args) -> int:
    from ..core.serve.security.keys import KeyStore

    keys = KeyStore(_store_path(args)).list()
    if not keys:
        print(f"no keys in {_store_path(args)}  (add one: workbench keys add NAME --role ROLE)")
        return 0
    print(f"{'id':<13} {'role':<9} {'status':<8} {'created':<26} {'expires':<26} name")
    for k in keys:
        print(f"{k.key_id:<13} {k.role.value:<9} {k.status:<8} {k.created:<26} {k.expires:<26} {k.name}")
    return 0


def _keys_revoke(args) -> int:
    def act(store):
        info = store.revoke(args.key_id)
        return info, {"name": info.name, "target": info.key_id, "role": info.role.value}

    info = _audited(args, "keys revoke", act)
    print(f"revoked {info.key_id} ({info.name}, {info.role.value}) at {info.revoked}")
    return 0


def _audit_verify(args) -> int:
    from ..core.errors import ConfigError
    from ..core.serve.security.audit import verify_audit

    path = Path(args.file).expanduser().resolve() if args.file else _audit_path(args)
    if not path.is_file():
        raise ConfigError(f"no audit log at {path}", "name the file: workbench audit verify FILE")
    report = verify_audit(path)
    if report.ok:
        print(f"ok: {report.records} records, chain and head intact ({path})")
        return 0
    where = f"line {report.line}" if report.line is not None else "head"
    print(f"TAMPERED at {where}: {report.problem} ({report.records} records intact before it; {path})")
    return 1


def _location(command, *, audit: bool) -> None:
    command.add_argument("--store", default=None, help="the key store (default: <workspace>/serve/keys.json)")
    command.add_argument("--workspace", default=None, help="default: $WORKBENCH_WORKSPACE or ./workbench-runs")
    if audit:
        command.add_argument("--audit", default=None, help="the audit log (default: audit.jsonl beside the store)")


def add_admin_parsers(sub) -> None:
    """Register `workbench keys add|list|revoke` and `workbench audit verify`."""
    from ..core.serve.security.principal import Role

    keys = sub.add_parser("keys", help="API keys of the inference service: add, list, revoke")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    add = keys_sub.add_parser("add", help="make a key (shown once); admins also get a TOTP secret")
    add.add_argument("name", help="who or what uses the key")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--expires-days", type=_positive, default=90, help="days until the key expires (default 90)")
    _location(add, audit=True)
    add.set_defaults(run=_keys_add)
    listing = keys_sub.add_parser("list", help="the keys, their roles and status (never the keys themselves)")
    _location(listing, audit=False)
    listing.set_defaults(run=_keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    _location(revoke, audit=True)
    revoke.set_defaults(run=_keys_revoke)

    audit = sub.add_parser("audit", help="the service's hash-chained audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the chain: exit 0 intact, 1 tampered (line and problem)")
    verify.add_argument("file", nargs="?", default=None, help="the log (default: <workspace>/serve/audit.jsonl)")
    _location(verify, audit=False)
    verify.set_defaults(run=_audit_verify)
