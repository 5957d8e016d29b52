"""Prometheus text exposition of the daemon's counters (format 0.0.4), without a client library."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    value: float
    help: str
    kind: str = "gauge"  # or "counter"
    labels: tuple[tuple[str, str], ...] = field(default=())


def render_metrics(samples: Iterable[Sample]) -> str:
    lines: list[str] = []
    described: set[str] = set()
    for s in samples:
        if s.name not in described:
            described.add(s.name)
            lines.append(f"# HELP {s.name} {s.help}")
            lines.append(f"# TYPE {s.name} {s.kind}")
        labels = ",".join(f'{k}="{_escape(v)}"' for k, v in s.labels)
        value = _number(s.value)
        lines.append(f"{s.name}{{{labels}}} {value}" if labels else f"{s.name} {value}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    # Exact integers as integers; otherwise full precision (a Unix timestamp needs 13 digits).
    return str(int(value)) if float(value).is_integer() else repr(float(value))
