"""Who is calling and what they may do: the roles, the actions each role may take, the caller once authenticated
(`Principal`) and the refusal (`Denied`, with the HTTP status it answers). Shared by the key store, the guard and
the app."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """Roles, each allowed what the ones before it are (see `ROLE_ACTIONS`)."""

    READER = "reader"  # health and metadata
    INFERRER = "inferrer"  # + inference
    OPERATOR = "operator"  # + load or switch variants, read metrics
    ADMIN = "admin"  # + manage keys, read the audit log; needs a TOTP second factor


class Action(StrEnum):
    """What a request does; the app names one per endpoint."""

    HEALTH = "health"
    METADATA = "metadata"
    INFER = "infer"
    METRICS = "metrics"
    LOAD_VARIANT = "load_variant"
    MANAGE_KEYS = "manage_keys"
    READ_AUDIT = "read_audit"


ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.READER: frozenset({Action.HEALTH, Action.METADATA}),
    Role.INFERRER: frozenset({Action.HEALTH, Action.METADATA, Action.INFER}),
    Role.OPERATOR: frozenset({Action.HEALTH, Action.METADATA, Action.INFER, Action.METRICS, Action.LOAD_VARIANT}),
    Role.ADMIN: frozenset(Action),
}
SECOND_FACTOR_ACTIONS = frozenset({Action.MANAGE_KEYS, Action.READ_AUDIT})  # admin actions: a TOTP code as well


def allowed(role: Role, action: Action) -> bool:
    return action in ROLE_ACTIONS[role]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the key's id and name (never the key), its role."""

    key_id: str
    name: str
    role: Role


class Denied(Exception):
    """A refused request: `status` is what the app answers (401 unknown, expired or missing key; 403 a role that may
    not, or a missing or wrong second factor; 429 locked out), `reason` a short text for the caller and the audit."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason
