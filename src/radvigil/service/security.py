"""API-key authentication with a short cache, role checks, and per-key token-bucket limits.

The buckets live in this process (:class:`MemoryBuckets`, the embedded default) or in the
database shared by all replicas (:class:`~radvigil.store.ratelimits.DatabaseBuckets`,
``RADVIGIL_RATE_LIMIT_STORE=database``), behind the one-method :class:`TokenBuckets` seam.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from radvigil.errors import AuthError, StoreError
from radvigil.service.errors import ApiError
from radvigil.store import ApiKeyPublic, KeyStore, require
from radvigil.store.keys import hash_token

AUTH_CACHE_SECONDS = 15.0
log = logging.getLogger(__name__)


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


class TokenBuckets(Protocol):
    """Where buckets live: ``take`` returns None when granted, else the seconds to wait."""

    def take(
        self, name: str, capacity: float, refill_per_s: float, cost: float
    ) -> float | None: ...


class MemoryBuckets:
    """Buckets in this process's memory: one replica's view of the traffic."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, name: str, capacity: float, refill_per_s: float, cost: float) -> float | None:
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.setdefault(name, _Bucket(capacity, now))
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * refill_per_s)
            bucket.updated = now
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return None
            return (cost - bucket.tokens) / refill_per_s


class RateLimiter:
    """Token bucket per key: ``rate_limit`` requests per minute, bursts up to that many.

    With shared buckets, a database outage falls back to this process's own buckets (logged
    once) rather than refusing every request: serving outlives the database by design.
    """

    def __init__(self, buckets: TokenBuckets | None = None) -> None:
        self.buckets = buckets or MemoryBuckets()
        self._fallback = MemoryBuckets()
        self._degraded = False

    def take(self, key: ApiKeyPublic, cost: float = 1.0) -> None:
        """Charge ``cost`` tokens to the key (429 with Retry-After when it has too few)."""
        self._take(key.name, key.rate_limit, cost, f"key {key.name!r}")

    def take_address(self, address: str, per_minute: int) -> None:
        """Charge one request with a missing or invalid key to the client's address."""
        self._take(
            f"addr:{address}", per_minute, 1.0, f"requests without a valid key from {address}"
        )

    def _take(self, name: str, rate_limit: int, cost: float, who: str) -> None:
        capacity = float(max(1, rate_limit))
        cost = min(cost, capacity)  # an expensive call stays possible for a slow key
        refill = capacity / 60.0
        try:
            wait = self.buckets.take(name, capacity, refill, cost)
            self._degraded = False
        except StoreError as exc:
            if not self._degraded:
                log.warning("shared rate limits unavailable, limiting per process: %s", exc)
            self._degraded = True
            wait = self._fallback.take(name, capacity, refill, cost)
        if wait is None:
            return
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit of {rate_limit}/min exceeded for {who}",
            headers={"Retry-After": str(max(1, int(wait + 0.999)))},
        )
