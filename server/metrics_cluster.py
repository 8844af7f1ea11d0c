"""The summed ``/metrics?scope=cluster`` view: every live worker's snapshot added up.

Each process publishes its own exposition text with its heartbeat (``Store.publish_metrics``);
any worker can then answer for all of them. Counters, histograms and most gauges (sessions,
peers, CPU ratio) add up; a few gauges make sense only as the worst worker's value.
"""

from __future__ import annotations

from typing import Iterable

from prometheus_client.parser import text_string_to_metric_families

# Gauges whose sum means nothing: the cluster view shows the worst worker.
MAX_GAUGES = frozenset({"livecoach_loop_lag_seconds"})

_Key = tuple[str, tuple[tuple[str, str], ...]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample_line(name: str, labels: tuple[tuple[str, str], ...], value: float) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return f"{name}{{{inner}}} {value!r}" if inner else f"{name} {value!r}"


def sum_expositions(texts: Iterable[str]) -> str:
    """One exposition whose samples are the sums (``MAX_GAUGES``: maxima) of ``texts``' samples,
    plus ``livecoach_workers``, the number of snapshots summed."""
    families: dict[str, tuple[str, str]] = {}  # name -> (type, help), first-seen order
    samples: dict[str, dict[_Key, float]] = {}
    workers = 0
    for text in texts:
        workers += 1
        for family in text_string_to_metric_families(text):
            families.setdefault(family.name, (family.type, family.documentation))
            acc = samples.setdefault(family.name, {})
            take_max = family.name in MAX_GAUGES
            for s in family.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                if key in acc:
                    acc[key] = max(acc[key], s.value) if take_max else acc[key] + s.value
                else:
                    acc[key] = s.value
    lines = ["# HELP livecoach_workers Server processes in this summed view",
             "# TYPE livecoach_workers gauge", f"livecoach_workers {float(workers)!r}"]
    for name, (kind, doc) in families.items():
        lines += [f"# HELP {name} {doc}", f"# TYPE {name} {kind}"]
        lines += [_sample_line(sname, labels, value) for (sname, labels), value in samples[name].items()]
    return "\n".join(lines) + "\n"
