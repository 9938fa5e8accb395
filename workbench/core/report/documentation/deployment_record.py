"""A deployment record: where and how a variant is served, from facts the deployer hands over plus the ledger.

The facts are plain values (text, numbers, paths, lists and small tables), never objects of the serving layer, so
the report layer needs nothing of it. Their keys follow what serving gives: `RunningServer`'s `url`, `ca_file`,
`audit` and `protections`; `verify_audit`'s report as `audit_verification` (`asdict` of it, plus the head hash if
wanted); `KeyStore.list()` entries as `keys`; `asdict(Limits)` as `limits`; `ServedModel.describe()` as
`served_model`. A record never holds a secret: unknown keys are refused, and so is any value that looks like one
(an API key, a PEM private key, a TOTP URI, a password in a URL, raw bytes), without echoing it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import ConfigError
from ...store.ledger import now
from .card_facts import drift_summary
from .card_markdown import LATENCY_COLUMNS, cell, dated_rows, drift_lines, table, when
from .model_card import model_card, open_workspace, write_card

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

SECRETS = (
    (re.compile(r"wbk_[0-9a-f]{12}_"), "a workbench API key (wbk_<id>_<secret>): record its key id only"),
    (re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"), "a PEM private key"),
    (re.compile(r"otpauth://", re.IGNORECASE), "a TOTP provisioning URI (it carries the TOTP secret)"),
    (re.compile(r"://[^/\s:@]+:[^/\s@]+@"), "a URL with a password in it"),
)
KEY_ID = re.compile(r"^[0-9a-f]{12}$")  # the id part of wbk_<id>_<secret>, as `KeyStore.list()` shows it
KEY_FIELDS = ("key_id", "name", "role", "created", "expires", "revoked", "status")
AUDIT_FIELDS = ("ok", "records", "problem", "line", "head_hash")
FIELDS = {  # key: (kind, what it is)
    "url": ("text", "the served base URL (RunningServer.url)"),
    "host": ("text", "the machine it runs on"),
    "started_at": ("time", "when the server started (ISO 8601 with a time zone)"),
    "served_model": ("text", "ServedModel.describe()"),
    "protections": ("texts", "what is on (RunningServer.protections)"),
    "ca_file": ("path", "the CA certificate clients trust (RunningServer.ca_file)"),
    "tls_version": ("text", "e.g. TLSv1.3 (ssl socket .version())"),
    "tls_cipher": ("text", "e.g. TLS_AES_256_GCM_SHA384 (ssl socket .cipher()[0])"),
    "certificate_sha256": ("text", "the server certificate's sha256 fingerprint"),
    "certificate_expires": ("time", "the server certificate's not-after time"),
    "keys": ("keys", f"the API keys allowed in: {', '.join(KEY_FIELDS)} each (KeyStore.list()), never the keys"),
    "audit": ("path", "the audit log (RunningServer.audit)"),
    "audit_verification": ("audit", f"verify_audit's report: {', '.join(AUDIT_FIELDS)}"),
    "bundle": ("path", "the deployment bundle's folder"),
    "manifest_signer": ("text", "the public-key fingerprint the bundle's manifest is signed with"),
    "manifest_signed_at": ("time", "when the manifest was signed"),
    "manifest_verified": ("bool", "whether verify_manifest accepted the bundle"),
    "public_key_file": ("path", "the signer's public key file"),
    "limits": ("numbers", "the service's limits (asdict(Limits))"),
    "notes": ("text", "anything else, in words"),
}


@dataclass(frozen=True)
class DeploymentRecord:
    """Where and how a variant is deployed (the facts handed over), with its card summary, latency and drift."""

    deployment: dict
    model: dict
    latency: list[dict]
    drift: dict
    workspace: str
    generated_at: str = field(default_factory=now)

    def as_dict(self) -> dict:
        return asdict(self)

    def markdown(self) -> str:
        return _record_markdown(self)

    def save(self, path: Path | str) -> Path:
        """Write the record atomically: JSON when `path` ends in .json, else markdown."""
        return write_card(self, path)


def deployment_record(workspace: Workspace | Path | str, variant_id: int, *, deployment: Mapping) -> DeploymentRecord:
    """The record of one deployment of a recorded variant.

    Args:
        workspace: a `Workspace` (or its folder) whose ledger holds the variant.
        variant_id: the variant served.
        deployment: the facts of the deployment, plain values under the keys of `FIELDS`.
    Returns:
        the record: the deployment facts, the variant's card summary, its latency measurements and the drift
        alerts recorded since `started_at` (all of them when it is not given).
    Raises:
        ConfigError: `deployment` holds an unknown key, a value of the wrong kind, or something that looks like a
            secret (the message names the key, never the value).
        WorkspaceError: the ledger has no such variant.
    """
    facts = check_deployment(deployment)
    workspace = open_workspace(workspace)
    card = model_card(workspace, variant_id)
    since = facts.get("started_at")
    recorded = workspace.ledger.measurements(variant_id=variant_id, kind="drift_alert")
    return DeploymentRecord(
        deployment=facts,
        model=_summary(card),
        latency=card.metrics["latency"],
        drift={**drift_summary(recorded, since=since), "since": since},
        workspace=card.workspace,
    )


def check_deployment(deployment: Mapping) -> dict:
    """The deployment facts checked and made plain (paths and times as text); see `deployment_record`."""
    if not isinstance(deployment, Mapping):
        raise ConfigError(f"deployment must be a mapping, got {type(deployment).__name__}", "pass a dict of facts")
    for where, text in _texts(deployment, "deployment"):
        for pattern, what in SECRETS:
            if pattern.search(text):
                raise ConfigError(
                    f"{where} looks like {what}; a deployment record never holds secrets",
                    "leave it out (record key ids, fingerprints and file paths instead)",
                )
    unknown = sorted(str(k) for k in deployment if k not in FIELDS)
    if unknown:
        raise ConfigError(f"unknown deployment key(s): {', '.join(unknown)}", f"use only: {', '.join(FIELDS)}")
    checks = {"text": _text, "time": _time, "path": _path, "bool": _bool, "texts": _text_list}
    checks.update(keys=_keys, audit=_audit, numbers=_numbers)
    return {key: checks[FIELDS[key][0]](key, value) for key, value in deployment.items() if value is not None}


def _texts(value, where: str):
    """Every text in `value` (keys of mappings included) with where it sits; raw bytes are refused here."""
    if isinstance(value, bytes | bytearray | memoryview):
        raise ConfigError(f"{where} is raw bytes (a model key is bytes): not recorded", "pass text, or leave it out")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield f"{where}[{k!r}] (its key)", str(k)
            yield from _texts(v, f"{where}[{k!r}]")
    elif isinstance(value, list | tuple | set | frozenset):
        for i, v in enumerate(value):
            yield from _texts(v, f"{where}[{i}]")
    elif isinstance(value, str | os.PathLike):
        yield where, os.fspath(value)


def _refuse(key: str, value, expected: str):
    raise ConfigError(f"deployment[{key!r}] must be {expected}, got {type(value).__name__}", f"{key}: {FIELDS[key][1]}")


def _text(key: str, value) -> str:
    if not isinstance(value, str):
        _refuse(key, value, "text")
    return value


def _path(key: str, value) -> str:
    if not isinstance(value, str | os.PathLike):
        _refuse(key, value, "a path")
    return str(Path(value))


def _bool(key: str, value) -> bool:
    if not isinstance(value, bool):
        _refuse(key, value, "true or false")
    return value


def _text_list(key: str, value) -> list[str]:
    if isinstance(value, str) or not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        _refuse(key, value, "a list of texts")
    return [str(v) for v in value]


def _time(key: str, value) -> str:
    """An ISO 8601 time with a time zone, as UTC text in the ledger's own form (so times compare as text)."""
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"deployment[{key!r}] is not an ISO 8601 time", "e.g. 2026-12-03T12:00:00+00:00") from None
    if moment.tzinfo is None:
        raise ConfigError(f"deployment[{key!r}] has no time zone", "e.g. datetime.now(UTC).isoformat()")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _plain(value):
    return asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value


def _table(key: str, value, allowed: tuple[str, ...]) -> dict:
    value = _plain(value)
    if not isinstance(value, Mapping):
        _refuse(key, value, "a mapping")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise ConfigError(f"unknown field(s) in deployment[{key!r}]: {', '.join(unknown)}", f"use {', '.join(allowed)}")
    return {k: v if isinstance(v, bool | int | float) or v is None else str(v) for k, v in value.items()}


def _keys(key: str, value) -> list[dict]:
    if isinstance(value, str | Mapping) or not isinstance(value, list | tuple):
        _refuse(key, value, "a list of key entries")
    entries = [_table(key, entry, KEY_FIELDS) for entry in value]
    for entry in entries:
        if not KEY_ID.match(str(entry.get("key_id", ""))):
            raise ConfigError(
                f"a deployment key entry's key_id is {'not 12 hex digits' if 'key_id' in entry else 'missing'}",
                "pass the key ids `workbench keys list` shows, never the keys",
            )
    return entries


def _audit(key: str, value) -> dict:
    value = dict(_plain(value)) if isinstance(_plain(value), Mapping) else value
    if isinstance(value, dict) and value.pop("tail", ()):  # verify_audit(path, tail=N)'s lines stay in the log
        raise ConfigError(f"deployment[{key!r}] holds audit lines", "pass asdict(verify_audit(path)) without tail=")
    report = _table(key, value, AUDIT_FIELDS)
    if not isinstance(report.get("ok"), bool):
        raise ConfigError(f"deployment[{key!r}] needs ok: true or false", "pass asdict(verify_audit(path))")
    return report


def _numbers(key: str, value) -> dict:
    value = _plain(value)
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and (v is None or (isinstance(v, int | float) and not isinstance(v, bool)))
        for k, v in value.items()
    ):
        _refuse(key, value, "a mapping of names to numbers")
    return dict(value)


def _summary(card) -> dict:
    d = card.details
    accuracy = card.metrics["accuracy"][-1] if card.metrics["accuracy"] else None
    return {
        **{k: d[k] for k in ("name", "id", "format", "sha256", "size_bytes", "classes", "input_size")},
        "lineage": " -> ".join(f"#{s['id']} {s['step']}" for s in card.lineage),
        "accuracy": accuracy and {k: v for k, v in accuracy.items() if k != "per_class"},
        "intended_use": card.intended_use["statement"],
        "limitations": card.limitations,
    }


# -- markdown --------------------------------------------------------------------------------------------------------

FACT_SECTIONS = {
    "Where": ("url", "host", "started_at", "served_model", "protections"),
    "Transport security": ("tls_version", "tls_cipher", "certificate_sha256", "certificate_expires", "ca_file"),
    "Bundle": ("bundle", "manifest_signer", "manifest_signed_at", "manifest_verified", "public_key_file"),
}
LABELS = {"url": "URL", "started_at": "started", "ca_file": "CA file", "tls_version": "TLS version"}
LABELS.update(tls_cipher="TLS cipher", certificate_sha256="certificate sha256", manifest_signer="manifest signer key")


def _fact(key: str, value) -> str:
    if FIELDS[key][0] == "time":
        value = when(value)
    elif isinstance(value, list):
        value = ", ".join(value)
    elif FIELDS[key][0] == "path" or key in ("certificate_sha256", "manifest_signer"):
        value = f"`{value}`"
    return f"- **{LABELS.get(key, key.replace('_', ' '))}**: {cell(value)}"


def _facts(facts: Mapping, title: str) -> list[str]:
    return [_fact(k, facts[k]) for k in FACT_SECTIONS[title] if k in facts] or ["- not given"]


def _record_markdown(record: DeploymentRecord) -> str:
    facts, m = record.deployment, record.model
    lines = [
        f"# Deployment record: {m['name']} (variant #{m['id']})",
        "",
        f"_Generated {when(record.generated_at)}. Where and how it is deployed is as the deployer handed it over; "
        f"the model, its latency and its drift alerts are from the ledger of `{record.workspace}`._",
    ]
    lines += ["", "## Where", "", *_facts(facts, "Where")]
    lines += ["", "## Transport security", "", *_facts(facts, "Transport security")]
    lines += ["", "## Access", ""]
    keys = facts.get("keys")
    if keys:
        lines += ["Only key ids are recorded, never the keys.", ""]
        lines += table(keys, [(k, k.replace("_", " "), 0) for k in KEY_FIELDS if any(k in e for e in keys)])
    else:
        lines.append("- keys: not given")
    lines += ["", "## Audit log", "", *(_audit_lines(facts) or ["- not given"])]
    lines += ["", "## Bundle", "", *_facts(facts, "Bundle")]
    limits = [f"- **{k}**: {'-' if v is None else v}" for k, v in (facts.get("limits") or {}).items()]
    lines += ["", "## Limits", "", *(limits or ["- not given"])]
    lines += ["", "## The model", ""] + _model_lines(m)
    lines += ["", "## Latency measured", ""]
    lines += table(dated_rows(record.latency), LATENCY_COLUMNS) if record.latency else ["Latency: not measured."]
    since = f"since {when(record.drift['since'])}" if record.drift["since"] else "(no start time given: all of them)"
    lines += ["", f"## Drift alerts {since}", "", *drift_lines(record.drift)]
    if facts.get("notes"):
        lines += ["", "## Notes", "", facts["notes"]]
    return "\n".join(lines) + "\n"


def _audit_lines(facts: Mapping) -> list[str]:
    lines = [f"- **log**: `{facts['audit']}`"] if "audit" in facts else []
    report = facts.get("audit_verification")
    if report:
        head = f", head hash `{report['head_hash']}`" if report.get("head_hash") else ""
        if report["ok"]:
            lines.append(f"- **verified**: intact, {report.get('records')} records{head}")
        else:
            at = f" at line {report['line']}" if report.get("line") else ""
            lines.append(
                f"- **verified**: BROKEN{at} after {report.get('records')} intact records: {report.get('problem')}"
            )
    return lines


def _model_lines(m: Mapping) -> list[str]:
    names = m["classes"]
    lines = [
        f"- **Name**: {m['name']} (variant #{m['id']}, {m['format'] or '-'}, {m['size_bytes']} bytes)",
        f"- **sha256**: `{m['sha256'] or '-'}`",
        f"- **Classes**: {', '.join(names.values()) if names else 'not recorded'}; input {m['input_size']}",
        f"- **Lineage**: {m['lineage']}",
        f"- **Intended use**: {m['intended_use']}",
    ]
    a = m["accuracy"]
    if a:
        lines.append(
            f"- **Accuracy**: mAP50-95 {cell(a['map50_95'])}, mAP50 {cell(a['map50'])} on `{a['data_yaml']}` "
            f"({a['split']}, imgsz {a['imgsz']}, {a['runtime']} {a['compute_precision']}; measurement "
            f"#{a['measurement_id']}, {when(a['measured_at'])})"
        )
    else:
        lines.append("- **Accuracy**: not measured")
    lines += [f"- **Limitation**: {t}" for t in m["limitations"]]
    return lines + [f"- **Full card**: `workbench card {m['id']}`"]
