"""Rate limits and connection caps: token buckets (clock injected, so tests need no sleeps).

Used for WebSocket messages per connection and type (a mentor's tip flood is refused at the
sender, never by disconnecting the receiver), unauthenticated REST per client address, and
connections that have not joined yet, per process and per address.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

Clock = Callable[[], float]


@dataclass
class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; ``take()`` is False when empty."""

    rate: float
    burst: float
    clock: Clock = time.monotonic
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = self.burst
        self.stamp = self.clock()

    def take(self, cost: float = 1.0) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def retry_after(self, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are there (0 when they are now)."""
        return max(0.0, (cost - self.tokens) / self.rate) if self.rate > 0 else float("inf")


class KeyedLimiter:
    """One bucket per key (client address, message type…), the least recently used dropped past
    ``max_keys`` so a spray of addresses cannot grow memory without bound."""

    def __init__(self, rate: float, burst: float, max_keys: int = 10_000, clock: Clock = time.monotonic) -> None:
        self.rate, self.burst, self.max_keys, self.clock = rate, burst, max_keys, clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def bucket(self, key: str) -> TokenBucket:
        found = self._buckets.get(key)
        if found is None:
            found = self._buckets[key] = TokenBucket(self.rate, self.burst, self.clock)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return found

    def take(self, key: str, cost: float = 1.0) -> bool:
        return self.bucket(key).take(cost)

    def __len__(self) -> int:
        return len(self._buckets)


class ConnectionCap:
    """Counts open connections per process and per address; ``acquire`` is False past a cap."""

    def __init__(self, max_total: int, max_per_address: int) -> None:
        self.max_total, self.max_per_address = max_total, max_per_address
        self.total = 0
        self._per_address: dict[str, int] = {}

    def acquire(self, address: str) -> bool:
        held = self._per_address.get(address, 0)
        if self.total >= self.max_total or held >= self.max_per_address:
            return False
        self.total += 1
        self._per_address[address] = held + 1
        return True

    def release(self, address: str) -> None:
        held = self._per_address.get(address, 0)
        if held <= 0:
            return
        self.total -= 1
        if held == 1:
            del self._per_address[address]
        else:
            self._per_address[address] = held - 1

    def held(self, address: str) -> int:
        return self._per_address.get(address, 0)
