"""The summed /metrics view: pure summation of exposition texts (no clock, no server)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from server.metrics_cluster import sum_expositions


def _worker(sessions: int, lag_s: float, errors: dict[str, int], latencies: list[float]) -> str:
    r = CollectorRegistry()
    Gauge("livecoach_sessions", "Active sessions", registry=r).set(sessions)
    Gauge("livecoach_loop_lag_seconds", "Loop lag", registry=r).set(lag_s)
    c = Counter("livecoach_signalling_errors", "Errors", ["reason"], registry=r)
    for reason, n in errors.items():
        c.labels(reason=reason).inc(n)
    h = Histogram("livecoach_turn_latency_seconds", "Turn latency", buckets=(0.5, 1.0), registry=r)
    for v in latencies:
        h.observe(v)
    return generate_latest(r).decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_sums_counters_histograms_and_gauges_but_takes_the_worst_loop_lag() -> None:
    one = _worker(3, 0.002, {"bad_sdp": 1}, [0.4, 0.7])
    two = _worker(5, 0.040, {"bad_sdp": 2, "rate_limited": 4}, [0.9])
    got = _samples(sum_expositions([one, two]))
    assert got[("livecoach_workers", ())] == 2
    assert got[("livecoach_sessions", ())] == 8
    assert got[("livecoach_loop_lag_seconds", ())] == 0.040
    assert got[("livecoach_signalling_errors_total", (("reason", "bad_sdp"),))] == 3
    assert got[("livecoach_signalling_errors_total", (("reason", "rate_limited"),))] == 4
    assert got[("livecoach_turn_latency_seconds_bucket", (("le", "0.5"),))] == 1
    assert got[("livecoach_turn_latency_seconds_bucket", (("le", "1.0"),))] == 3
    assert got[("livecoach_turn_latency_seconds_count", ())] == 3
    assert abs(got[("livecoach_turn_latency_seconds_sum", ())] - 2.0) < 1e-9


def test_no_snapshots_is_an_empty_cluster() -> None:
    assert _samples(sum_expositions([])) == {("livecoach_workers", ()): 0}
