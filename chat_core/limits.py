"""Abuse limits: token buckets per connection, per client address and per name,
and a connection count per address.

A limit kept per connection alone is reset by reconnecting, so every rate that
matters is also kept per address (and messages per name), across connections.
Every limit is a setting where 0 turns it off.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Optional


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up. ``rate`` 0: unlimited."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        if not self.rate:
            return True
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class KeyedBuckets:
    """One :class:`TokenBucket` per key (a client address, a name), made on first use.

    Memory stays bounded however many keys an attacker uses: a full bucket holds
    nothing worth keeping, so full buckets are swept out every ``sweep`` seconds;
    past ``max_keys`` live keys, a new key shares one overflow bucket (so a flood of
    fresh addresses is throttled as one).
    """

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000, sweep: float = 30.0) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_keys = max_keys
        self._sweep = sweep
        self._swept = time.monotonic()
        self._buckets: dict[str, TokenBucket] = {}
        self._overflow = TokenBucket(rate, burst)

    def take(self, key: str) -> bool:
        if not self.rate:
            return True
        bucket = self._buckets.get(key)
        if bucket is None:
            now = time.monotonic()
            if now - self._swept > self._sweep:
                self._swept = now
                self._drop_full(now)
            if len(self._buckets) >= self.max_keys:
                return self._overflow.take()
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket.take()

    def _drop_full(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.stamp) * b.rate >= b.burst]
        for key in full:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


class Flood:
    """Counts refused messages, forgetting ``rate`` of them a second; past ``limit`` the
    sender is flooding and gets closed."""

    __slots__ = ("rate", "limit", "level", "stamp")

    def __init__(self, rate: float, limit: int) -> None:
        self.rate = rate
        self.limit = limit
        self.level = 0.0
        self.stamp = time.monotonic()

    def strike(self) -> bool:
        """Count one refusal; True when the limit is passed."""
        now = time.monotonic()
        self.level = max(0.0, self.level - (now - self.stamp) * self.rate) + 1.0
        self.stamp = now
        return bool(self.limit) and self.level > self.limit


class Guesses:
    """Wrong secrets (the admin token, a bot key) per client address: after ``limit`` in
    ``window`` seconds, the address is blocked until the window is over, so its next ones are
    refused unread, the right one too (else the limit would not stop a guesser who got lucky).
    At most ``kept`` addresses are remembered, the oldest forgotten first."""

    def __init__(self, limit: int = 5, window: float = 60.0, kept: int = 10_000) -> None:
        self.limit, self.window, self.kept = limit, window, kept
        self.seen: dict[str, tuple[float, int]] = {}  # address -> (window start, wrong ones in it)

    def blocked(self, address: str) -> bool:
        start, wrong = self.seen.get(address, (0.0, 0))
        return wrong >= self.limit and time.monotonic() - start < self.window

    def wrong(self, address: str) -> None:
        """One more wrong secret from ``address``."""
        now = time.monotonic()
        start, wrong = self.seen.pop(address, (now, 0))
        if now - start >= self.window:
            start, wrong = now, 0
        self.seen[address] = (start, wrong + 1)
        while len(self.seen) > self.kept:
            del self.seen[next(iter(self.seen))]


class AddressCounter:
    """Open connections per client address, with a cap (0: no cap)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open: Counter[str] = Counter()

    def acquire(self, address: str) -> bool:
        if self.cap and self.open[address] >= self.cap:
            return False
        self.open[address] += 1
        return True

    def release(self, address: str) -> None:
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]


def client_address(peer: Optional[str], forwarded_for: Optional[str], trust_proxy: str) -> str:
    """The address to count a connection against.

    ``trust_proxy``: "" trusts no header (the TCP peer counts); "N" trusts N proxies
    in front, so the N-th ``X-Forwarded-For`` entry from the right is the client;
    "first" takes the leftmost entry (for hosts such as Hugging Face Spaces whose
    proxy chain is not known in advance).
    """
    peer = peer or "unknown"
    if not trust_proxy or not forwarded_for:
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    if not hops:
        return peer
    if trust_proxy == "first":
        return hops[0]
    try:
        n = int(trust_proxy)
    except ValueError:
        return peer
    if n <= 0:
        return peer
    return hops[-n] if n <= len(hops) else hops[0]
