"""Token buckets and connection caps, driven by a fake clock (no sleeps)."""

from __future__ import annotations

from server.limits import ConnectionCap, KeyedLimiter, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=5.0, clock=clock)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    assert bucket.retry_after() == 0.5
    clock.now += 0.5
    assert bucket.take() and not bucket.take()
    clock.now += 100  # saving up never exceeds the burst
    assert sum(bucket.take() for _ in range(10)) == 5


def test_keyed_limiter_keeps_keys_apart_and_bounded() -> None:
    clock = Clock()
    limiter = KeyedLimiter(rate=1.0, burst=2.0, max_keys=3, clock=clock)
    assert limiter.take("a") and limiter.take("a") and not limiter.take("a")
    assert limiter.take("b")  # another key has its own bucket
    for key in ("c", "d", "e"):
        limiter.take(key)
    assert len(limiter) == 3  # the least recently used were dropped
    assert limiter.take("a")  # "a" was evicted: a fresh bucket


def test_connection_cap_per_process_and_address() -> None:
    cap = ConnectionCap(max_total=3, max_per_address=2)
    assert cap.acquire("1.1.1.1") and cap.acquire("1.1.1.1")
    assert not cap.acquire("1.1.1.1")
    assert cap.acquire("2.2.2.2")
    assert not cap.acquire("3.3.3.3")  # process total reached
    cap.release("1.1.1.1")
    assert cap.acquire("3.3.3.3")
    cap.release("9.9.9.9")  # releasing what was never held changes nothing
    assert cap.total == 3 and cap.held("1.1.1.1") == 1
