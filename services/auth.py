"""API keys: salted hashes at rest, scopes, and a token bucket per key.

A key is a random string handed to its holder once. genray keeps only a salted SHA-256 of it, in
a JSON file (`genray keys add` writes it), or reads plain keys from the GENRAY_API_KEYS
environment variable ("KEY=scope+scope,KEY2=admin") and hashes them before they go anywhere.
Each request names its key in `Authorization: Bearer KEY` (or `X-API-Key: KEY`)."""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field

SCOPES = ("generate", "attack", "explain", "admin")
ENV = "GENRAY_API_KEYS"
KEYS_FILE = "keys.json"  # in the storage root, where `genray keys` and `genray serve` look by default


class AuthError(Exception):
    def __init__(self, status: int, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


@dataclass
class KeyEntry:
    name: str
    salt: str
    hash: str
    scopes: list[str]
    rate_per_s: float | None = None  # None: no limit
    burst: int | None = None

    def matches(self, key: str) -> bool:
        return hmac.compare_digest(_digest(self.salt, key), self.hash)


def _digest(salt: str, key: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + key.encode()).hexdigest()


def check_scopes(scopes: list[str]) -> list[str]:
    bad = sorted(set(scopes) - set(SCOPES))
    if bad or not scopes:
        raise ValueError(f"scopes must be some of {list(SCOPES)}, got {scopes}")
    return sorted(set(scopes))


def make_entry(name: str, key: str, scopes: list[str], rate_per_s: float | None = None,
               burst: int | None = None) -> KeyEntry:
    salt = secrets.token_hex(16)
    return KeyEntry(name, salt, _digest(salt, key), check_scopes(scopes), rate_per_s, burst)


def new_key() -> str:
    return "gr-" + secrets.token_urlsafe(24)


def read_file(path: str) -> list[KeyEntry]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [KeyEntry(**e) for e in json.load(f)["keys"]]


def write_file(path: str, entries: list[KeyEntry]) -> None:
    """Atomically, readable by its owner only."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"keys": [asdict(e) for e in entries]}, f, indent=1)
    os.replace(tmp, path)


def add_key(path: str, name: str, scopes: list[str], rate_per_s: float | None = None,
            burst: int | None = None) -> str:
    """A new key under `name` (replacing any key of that name) in the file; returns the key."""
    key = new_key()
    entries = [e for e in read_file(path) if e.name != name]
    write_file(path, entries + [make_entry(name, key, scopes, rate_per_s, burst)])
    return key


def from_env(value: str | None) -> list[KeyEntry]:
    """Entries for "KEY=scope+scope,KEY2=admin" (scopes default to all but admin)."""
    out = []
    for i, item in enumerate(filter(None, (value or "").replace(";", ",").split(","))):
        key, _, scopes = item.strip().partition("=")
        out.append(make_entry(f"env-{i + 1}", key, scopes.split("+") if scopes else list(SCOPES[:-1])))
    return out


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: int):
        self.rate, self.burst = rate_per_s, burst
        self.tokens, self.t = float(burst), time.monotonic()

    def take(self) -> float:
        """0 if a request may go now (and counts it), else the seconds until one may."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass
class KeyStore:
    """Checks a request's key and scope, and its key's rate. With no entries and enabled=False,
    everything passes (an operator's explicit choice)."""
    entries: list[KeyEntry]
    enabled: bool = True
    _buckets: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def authorize(self, headers, scope: str | None) -> str | None:
        """The key's name, or None with auth off; raises AuthError (401, 403 or 429)."""
        if not self.enabled:
            return None
        key = _presented(headers)
        if not key:
            raise AuthError(401, "an API key is required: send 'Authorization: Bearer KEY'")
        entry = next((e for e in self.entries if e.matches(key)), None)
        if entry is None:
            raise AuthError(401, "unknown API key")
        if scope and scope not in entry.scopes and "admin" not in entry.scopes:
            raise AuthError(403, f"this key lacks the {scope!r} scope (it has {entry.scopes})")
        if entry.rate_per_s:
            burst = entry.burst or max(1, math.ceil(entry.rate_per_s))
            with self._lock:
                wait = self._buckets.setdefault(entry.name, TokenBucket(entry.rate_per_s, burst)).take()
            if wait:
                raise AuthError(429, f"rate limit of {entry.rate_per_s:g} requests/s for this key; retry later",
                                retry_after=wait)
        return entry.name


def _presented(headers) -> str | None:
    auth = headers.get("authorization") or ""
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return (headers.get("x-api-key") or "").strip() or None
