"""API keys of the inference service: a key store on disk (argon2id hashes, roles, expiry, revocation, TOTP for
admins) and the check of a presented key, with a cache that keeps the per-request cost in microseconds.

The file (`<workspace>/serve/keys.json`) is JSON, written atomically (temp file, fsync, `os.replace`) with mode
0600 in a 0700 folder (where the system has mode bits: Windows keeps access in ACLs); changes from several processes
are serialized by a lock on `keys.json.lock` (`store.portable.locked`: `fcntl.flock`, `msvcrt.locking` on Windows),
and a running server notices a change made by another process (`workbench keys revoke`) at its next request (one
`stat`).

What it holds per key: id, name, role, the argon2id hash of the secret, created, expires, revoked, and for admins
the TOTP secret *encrypted* (AES-256-GCM) with a key derived (HKDF-SHA256) from the API key's own secret, plus the
last accepted TOTP time step (a code is accepted once: replays are refused). Why encrypted and how: the TOTP secret
must be recoverable to check a code, so it cannot be hashed; encrypting it under a key kept elsewhere on the same
machine would only move the problem, but the API key's secret is never stored and arrives with every request, so a
copy of keys.json alone yields neither factor. Someone who holds both the file and an admin's API key can decrypt
that admin's TOTP secret: then the second factor protects no more than the file's 0600 mode does.

Costs measured on this machine (2 cores): one argon2id verification with the parameters below (`ARGON2_PARAMETERS`:
t=2, m=19 MiB, p=1, the OWASP minimum) 21 ms idle, 32 ms with the machine busy (load 5); a cached check of a key
verified in the last `cache_ttl_s` seconds 5.4 us (a SHA-256, a `stat` of the file, dictionary look-ups). The
default `PasswordHasher()` (t=3, m=64 MiB, p=4) took 350-600 ms busy: too slow for a service on two cores. The
secrets are 32 random bytes, so the slow hash is defence in depth, not what keeps them from being guessed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ...errors import ConfigError, WorkbenchError
from ...store.portable import locked, loose_mode
from .principal import SECOND_FACTOR_ACTIONS, Action, Denied, Principal, Role, allowed

KEY_PREFIX = "wbk"
ARGON2_PARAMETERS = {"time_cost": 2, "memory_cost": 19 * 1024, "parallelism": 1}  # OWASP's argon2id minimum
TOTP_STEP_S = 30
_KEY = re.compile(r"^wbk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")  # 6 random bytes hex, 32 bytes urlsafe base64
_TOTP = re.compile(r"^[0-9]{6}$")
_INVALID = "invalid API key"  # the same text for an unknown id and a wrong secret: ids are not secret
MAX_NAME = 100
SERVE_EXTRA = "pip install 'deploy-workbench[serve]'"


class AuthFailure(Denied):
    """A refused key or code. `key_id` is the id the caller presented (None when it named no known key), `counts`
    whether the refusal looks like guessing (a wrong secret, an unknown key, a wrong or replayed code), which the
    guard counts towards a lockout; a missing key, an expired one or a role that may not do not count."""

    def __init__(self, status: int, reason: str, *, key_id: str | None = None, counts: bool = False):
        super().__init__(status, reason)
        self.key_id = key_id
        self.counts = counts


@dataclass(frozen=True)
class NewKey:
    """A key just made: `key` (and for an admin `totp_secret`, `totp_uri`) exist only here; the store keeps hashes."""

    key_id: str
    key: str
    totp_secret: str | None
    totp_uri: str | None
    name: str
    role: Role
    expires: str


@dataclass(frozen=True)
class KeyInfo:
    """What `KeyStore.list` shows of a key: never its hash, secret or TOTP secret."""

    key_id: str
    name: str
    role: Role
    created: str
    expires: str
    revoked: str | None
    status: str  # "active", "expired" or "revoked"


def parse_key(key: str | None) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed `wbk_<id>_<secret>`, else None. Checks the form only, not the secret."""
    match = _KEY.match(key) if isinstance(key, str) and len(key) < 100 else None
    return (match.group(1), match.group(2)) if match else None


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _require(module: str):
    """Import an optional dependency of the service, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise WorkbenchError(f"API keys need the package that provides {module!r}", SERVE_EXTRA) from None


def default_hasher():
    """The argon2id hasher of new keys (verification reads the parameters from each stored hash)."""
    return _require("argon2").PasswordHasher(**ARGON2_PARAMETERS)


def _totp_cipher(secret: str, key_id: str):
    """AES-GCM keyed by HKDF-SHA256 of the API key's secret: only its holder can read the TOTP secret."""
    _require("cryptography")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    derived = HKDF(hashes.SHA256(), 32, salt=key_id.encode(), info=b"workbench totp secret").derive(secret.encode())
    return AESGCM(derived)


def _seal(totp_secret: str, secret: str, key_id: str) -> dict:
    nonce = os.urandom(12)
    sealed = _totp_cipher(secret, key_id).encrypt(nonce, totp_secret.encode(), key_id.encode())
    return {"nonce": base64.b64encode(nonce).decode(), "sealed": base64.b64encode(sealed).decode()}


def _unseal(box: dict, secret: str, key_id: str) -> str:
    nonce, sealed = base64.b64decode(box["nonce"]), base64.b64decode(box["sealed"])
    return _totp_cipher(secret, key_id).decrypt(nonce, sealed, key_id.encode()).decode()


def check_new_key(name: str, role: str, expires_days: int) -> tuple[str, Role]:
    """The name (stripped) and role of a key to add, or a ConfigError that says what is allowed."""
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME or not name.isprintable():
        raise ConfigError(
            f"a key needs a name of 1 to {MAX_NAME} printable characters, got {name!r}",
            "name it after who uses it, e.g. 'ci-smoke-test' or 'alice'",
        )
    try:
        role = Role(role)
    except ValueError:
        raise ConfigError(f"unknown role {role!r}", f"use one of: {', '.join(r.value for r in Role)}") from None
    if isinstance(expires_days, bool) or not isinstance(expires_days, int) or not 0 < expires_days <= 3650:
        raise ConfigError(
            f"expires_days must be a whole number from 1 to 3650, got {expires_days!r}",
            "keys expire: 90 days is the default; add a new key before the old one runs out",
        )
    return name.strip(), role


class KeyStore:
    """The API keys in `path` (JSON, mode 0600); see the module docstring for what it holds and what it costs.

    Args:
        path: the store's file; created with its folder on the first `add`.
        hasher: an argon2-cffi `PasswordHasher` for new keys (tests pass a cheap one); default `ARGON2_PARAMETERS`.
        cache_size, cache_ttl_s: how many successful verifications are remembered, and for how long.
    """

    def __init__(self, path: Path | str, *, hasher=None, cache_size: int = 1024, cache_ttl_s: float = 60.0):
        self.path = Path(path).expanduser().resolve()
        self._hasher = hasher or default_hasher()
        self._cache: OrderedDict[str, tuple[str, float]] = OrderedDict()  # sha256(key) -> (key id, verified at)
        self._cache_size, self._cache_ttl_s = cache_size, cache_ttl_s
        self._lock = threading.RLock()
        self._keys: dict[str, dict] = {}
        self._stamp: tuple | None = None
        self._dummy: str | None = None  # a hash to verify against for unknown ids: the same time either way

    # -- the file -------------------------------------------------------------------------------------------------

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _refresh(self, *, force: bool = False) -> None:
        """Reload when the file changed (another process added or revoked a key): a change empties the cache."""
        stamp = self._stat()
        if stamp == self._stamp and not force:
            return
        with self._lock:
            if stamp is None:
                keys = {}
            else:
                mode = loose_mode(self.path)
                if mode is not None:
                    raise ConfigError(f"{self.path} is readable by others (mode {mode:o})", f"chmod 600 {self.path}")
                try:
                    keys = json.loads(self.path.read_text())["keys"]
                except (ValueError, KeyError, TypeError) as exc:
                    raise ConfigError(f"{self.path} is not a key store ({exc})", "restore it from a backup") from None
            if stamp != self._stamp:
                self._cache.clear()
            self._keys, self._stamp = keys, stamp

    def _write(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".staging-{os.getpid()}-", dir=self.path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"version": 1, "keys": self._keys}, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._stamp = self._stat()  # our own change: the cache stays (revoke empties it itself)

    @contextlib.contextmanager
    def _locked(self):
        """This process's lock, then the file lock shared with other processes; the keys re-read inside."""
        with self._lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock_fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            with os.fdopen(lock_fd, "r+") as lock, locked(lock):
                self._refresh(force=True)
                yield

    # -- managing keys --------------------------------------------------------------------------------------------

    def add(self, name: str, role: Role | str, *, expires_days: int = 90, now: float | None = None) -> NewKey:
        """Make a key; the returned `NewKey` is the only place its secret (and an admin's TOTP secret) appears.

        Raises:
            ConfigError: an empty name, an unknown role, expires_days not in 1..3650.
        """
        name, role = check_new_key(name, role, expires_days)
        now = time.time() if now is None else now
        secret = secrets.token_urlsafe(32)
        totp_secret = totp_uri = None
        with self._locked():
            key_id = secrets.token_hex(6)
            while key_id in self._keys:
                key_id = secrets.token_hex(6)
            record = {
                "id": key_id,
                "name": name,
                "role": role.value,
                "hash": self._hasher.hash(secret),
                "created": _iso(now),
                "expires": _iso(now + timedelta(days=expires_days).total_seconds()),
                "revoked": None,
                "totp": None,
                "totp_step": None,
            }
            if role is Role.ADMIN:
                pyotp = _require("pyotp")
                totp_secret = pyotp.random_base32()
                totp_uri = pyotp.TOTP(totp_secret).provisioning_uri(name=f"{name} ({key_id})", issuer_name="workbench")
                record["totp"] = _seal(totp_secret, secret, key_id)
            self._keys[key_id] = record
            self._write()
        key = f"{KEY_PREFIX}_{key_id}_{secret}"
        return NewKey(key_id, key, totp_secret, totp_uri, name, role, record["expires"])

    def list(self, *, now: float | None = None) -> list[KeyInfo]:
        """Every key, oldest first, with its status; no hash or secret."""
        now = time.time() if now is None else now
        self._refresh()
        with self._lock:
            records = sorted(self._keys.values(), key=lambda r: (r["created"], r["id"]))
        return [
            KeyInfo(
                r["id"],
                r["name"],
                Role(r["role"]),
                r["created"],
                r["expires"],
                r["revoked"],
                "revoked" if r["revoked"] else "expired" if _epoch(r["expires"]) <= now else "active",
            )
            for r in records
        ]

    def revoke(self, key_id: str, *, now: float | None = None) -> KeyInfo:
        """Revoke a key from now on (in this process at once, in a running server at its next request).

        Raises:
            ConfigError: no key has this id.
        """
        now = time.time() if now is None else now
        with self._locked():
            record = self._keys.get(key_id)
            if record is None:
                raise ConfigError(f"no key with id {key_id!r} in {self.path}", "`workbench keys list` shows the ids")
            if not record["revoked"]:
                record["revoked"] = _iso(now)
                self._write()
            self._cache.clear()
        return next(info for info in self.list(now=now) if info.key_id == key_id)

    # -- checking a presented key ---------------------------------------------------------------------------------

    def authenticate(self, key: str | None, totp: str | None, action: Action, now: float | None = None) -> Principal:
        """The caller a presented key (and TOTP code) stands for, if it may take `action`.

        Raises:
            AuthFailure: 401 a missing, malformed, unknown, wrong, revoked or expired key; 403 a role that may not
                take the action, or an admin action without a valid, fresh TOTP code.
        """
        now = time.time() if now is None else now
        if key is None:
            raise AuthFailure(401, "missing API key (Authorization: Bearer <key>)")
        parsed = parse_key(key)
        if parsed is None:
            raise AuthFailure(401, _INVALID, counts=True)
        key_id, secret = parsed
        self._refresh()
        record = self._verified(key, key_id, secret)
        if record["revoked"]:
            raise AuthFailure(401, "API key revoked", key_id=key_id)
        if _epoch(record["expires"]) <= now:
            raise AuthFailure(401, "API key expired", key_id=key_id)
        role = Role(record["role"])
        if not allowed(role, action):
            raise AuthFailure(403, f"role {role.value} may not {action.value}", key_id=key_id)
        if action in SECOND_FACTOR_ACTIONS:
            self._check_totp(key_id, secret, totp, now)
        return Principal(key_id, record["name"], role)

    def _verified(self, key: str, key_id: str, secret: str) -> dict:
        """The key's record once its secret matched: from the cache, else by argon2 (outside the lock)."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        with self._lock:
            record = self._keys.get(key_id)
            hit = self._cache.get(digest)
            if record is not None and hit is not None and hit[0] == key_id:
                if time.monotonic() - hit[1] < self._cache_ttl_s:
                    self._cache.move_to_end(digest)
                    return record
                del self._cache[digest]
        if record is None:
            self._verify(self._dummy_hash(), secret)  # same cost as a known id: the timing says nothing
            raise AuthFailure(401, _INVALID, counts=True)
        if not self._verify(record["hash"], secret):
            raise AuthFailure(401, _INVALID, key_id=key_id, counts=True)
        with self._lock:
            if self._keys.get(key_id) is record:  # not revoked or reloaded meanwhile
                self._cache[digest] = (key_id, time.monotonic())
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return record

    def _verify(self, stored: str, secret: str) -> bool:
        argon2 = _require("argon2")
        try:
            return self._hasher.verify(stored, secret)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_urlsafe(32))
        return self._dummy

    def _check_totp(self, key_id: str, secret: str, code: str | None, now: float) -> None:
        """Accept a code of the current step or the one either side, once: its step must be newer than the last."""
        if not code:
            raise AuthFailure(403, "this action needs a TOTP code (X-TOTP header)", key_id=key_id)
        if not isinstance(code, str) or not _TOTP.match(code):
            raise AuthFailure(403, "wrong TOTP code", key_id=key_id, counts=True)
        pyotp = _require("pyotp")
        with self._locked():  # the step is read, compared and written under the file lock: one use, any process
            record = self._keys.get(key_id)
            if record is None or not record.get("totp"):
                raise AuthFailure(403, "this key has no TOTP secret", key_id=key_id)
            totp = pyotp.TOTP(_unseal(record["totp"], secret, key_id))
            step = int(now // TOTP_STEP_S)
            matched = next(
                (s for s in (step, step - 1, step + 1) if hmac.compare_digest(totp.at(s * TOTP_STEP_S), code)), None
            )
            if matched is None:
                raise AuthFailure(403, "wrong TOTP code", key_id=key_id, counts=True)
            if record["totp_step"] is not None and matched <= record["totp_step"]:
                raise AuthFailure(403, "TOTP code already used: wait for the next one", key_id=key_id, counts=True)
            record["totp_step"] = matched
            self._write()
