"""Wall-clock formatting shared by the HTTP layer and the stream frames."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(unix: float) -> str:
    """RFC 3339 in UTC with milliseconds, e.g. ``2026-12-04T15:27:50.123Z``."""
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
