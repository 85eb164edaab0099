"""API-key authentication with a short cache, role checks, and per-key token-bucket limits."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from radvigil.errors import AuthError, StoreError
from radvigil.service.errors import ApiError
from radvigil.store import ApiKeyPublic, KeyStore, require
from radvigil.store.keys import hash_token

AUTH_CACHE_SECONDS = 15.0


class Authenticator:
    """Resolve a token to its key, caching hits briefly (revocations apply within 15 s)."""

    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys
        self._cache: dict[str, tuple[float, ApiKeyPublic]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str | None) -> ApiKeyPublic | None:
        """The key of a token verified within the cache period, else None (no I/O)."""
        if not token:
            return None
        with self._lock:
            cached = self._cache.get(hash_token(token))
        if cached and time.monotonic() - cached[0] < AUTH_CACHE_SECONDS:
            return cached[1]
        return None

    def authenticate(self, token: str | None) -> ApiKeyPublic:
        if not token:
            raise AuthError("an API key is required (X-API-Key header or Authorization: Bearer)")
        digest = hash_token(token)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached and now - cached[0] < AUTH_CACHE_SECONDS:
            return cached[1]
        try:
            key = self.keys.authenticate(token)
        except StoreError:
            if cached:  # database briefly down: a recently verified key stays valid
                return cached[1]
            raise
        if key is None:
            raise AuthError("the API key is not valid or has been revoked")
        with self._lock:
            self._cache[digest] = (now, key)
        return key

    @staticmethod
    def authorise(key: ApiKeyPublic, action: str) -> None:
        require(key.role, action)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token bucket per key: ``rate_limit`` requests per minute, bursts up to that many."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: ApiKeyPublic, cost: float = 1.0) -> None:
        capacity = float(max(1, key.rate_limit))
        refill = capacity / 60.0
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.setdefault(key.name, _Bucket(capacity, now))
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * refill)
            bucket.updated = now
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return
            wait = (cost - bucket.tokens) / refill
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit of {key.rate_limit}/min exceeded for key {key.name!r}",
            headers={"Retry-After": str(max(1, int(wait + 0.999)))},
        )
