"""The service's door: reads the key and TOTP code from a request's headers, asks the key store, and locks out a key
or a client address after repeated failures (429), so keys and codes cannot be guessed at request speed."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

from .keys import AuthFailure, KeyStore, parse_key
from .principal import Action, Denied, Principal


class _Failures:
    """Failure times per subject within a sliding window, and the subjects locked out until when."""

    def __init__(self, max_failures: int, window_s: float, lockout_s: float, max_subjects: int):
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self.max_subjects = max_subjects
        self.times: dict[str, deque[float]] = {}
        self.locked: dict[str, float] = {}

    def remaining(self, subject: str, now: float) -> float:
        """Seconds `subject` stays locked out (0: not locked)."""
        until = self.locked.get(subject)
        if until is None:
            return 0.0
        if until <= now:
            del self.locked[subject]
            return 0.0
        return until - now

    def add(self, subject: str, now: float) -> None:
        times = self.times.setdefault(subject, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        times.append(now)
        if len(times) >= self.max_failures:
            self.locked[subject] = now + self.lockout_s
            del self.times[subject]
        if len(self.times) + len(self.locked) > self.max_subjects:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Forget expired failures and lockouts, so many addresses cannot grow memory without bound."""
        for subject in [s for s, t in self.times.items() if not t or t[-1] <= now - self.window_s]:
            del self.times[subject]
        for subject in [s for s, until in self.locked.items() if until <= now]:
            del self.locked[subject]
        while len(self.times) > self.max_subjects // 2:  # still too many: drop the oldest failures first
            del self.times[next(iter(self.times))]


class Guard:
    """`guard(headers, action, client) -> Principal`, or `Denied` (401, 403, or 429 while locked out).

    A failure that looks like guessing (an unknown or malformed key, a wrong secret, a wrong or replayed TOTP
    code) counts against the client address, and also against the key id when the key named one. `max_failures`
    within `window_s` seconds lock that subject out for `lockout_s` seconds; during a lockout every request of the
    subject is refused before its key is checked, even with the right key and code. A success does not wipe the
    count (else a stolen key without its TOTP could interleave harmless requests between guesses): failures only
    age out of the window. The price of a per-key lockout: anyone who knows a key id (ids are not secret; they are
    in the audit log) can keep that key locked out by sending wrong secrets for it.

    Args:
        keystore: the `KeyStore` that checks keys.
        clock: seconds since the epoch (tests pass a fake one); also the `now` the key store checks expiry at.
        max_subjects: how many addresses and key ids are tracked before expired ones are swept.
    """

    def __init__(
        self,
        keystore: KeyStore,
        *,
        max_failures: int = 5,
        window_s: float = 300,
        lockout_s: float = 300,
        clock: Callable[[], float] = time.time,
        max_subjects: int = 100_000,
    ):
        self.keystore = keystore
        self.clock = clock
        self._failures = _Failures(max_failures, window_s, lockout_s, max_subjects)
        self._lock = threading.Lock()

    def __call__(self, headers: Mapping[str, str], action: Action, client: str) -> Principal:
        key, totp = credentials(headers)
        parsed = parse_key(key)
        subjects = [f"client:{client}"] + ([f"key:{parsed[0]}"] if parsed else [])
        now = self.clock()
        with self._lock:
            wait = max(self._failures.remaining(subject, now) for subject in subjects)
        if wait > 0:
            raise Denied(429, f"locked out, try again in {math.ceil(wait)} s")
        try:
            return self.keystore.authenticate(key, totp, action, now=now)
        except AuthFailure as exc:
            if exc.counts:
                with self._lock:
                    self._failures.add(f"client:{client}", now)
                    if exc.key_id is not None:
                        self._failures.add(f"key:{exc.key_id}", now)
            raise


def credentials(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The API key (`Authorization: Bearer <key>` or `X-API-Key: <key>`) and TOTP code (`X-TOTP`) of a request.

    Header names are matched without regard to case. A request that gives the key both ways, differently, gets
    an empty key (refused as malformed) rather than one of the two picked silently.
    """
    lower = {str(name).lower(): value for name, value in headers.items()}
    key = None
    auth = (lower.get("authorization") or "").strip()
    if auth:
        scheme, _, value = auth.partition(" ")
        key = value.strip() if scheme.lower() == "bearer" else ""
    api_key = (lower.get("x-api-key") or "").strip() or None
    if api_key is not None:
        key = api_key if key is None or key == api_key else ""
    totp = (lower.get("x-totp") or "").strip() or None
    return key, totp
