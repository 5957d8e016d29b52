"""The small exception vocabulary of qsse.

Errors are named by what the operator or the caller can do about them, and library errors
(httpx2, msgspec, OS) are translated once, at the boundary that sees them.
"""

from __future__ import annotations


class QsseError(Exception):
    """Base of every error qsse raises on purpose."""


class ConfigError(QsseError):
    """The configuration file is missing, unreadable or invalid; the message names file and key."""


class UpstreamError(QsseError):
    """Talking to one qBittorrent instance failed."""

    #: Short machine-readable reason, used in logs, metrics and /healthz.
    kind = "error"


class UpstreamUnavailable(UpstreamError):
    """Connection refused, timed out, reset: retry later with backoff."""

    kind = "unavailable"


class UpstreamProtocolError(UpstreamError):
    """qBittorrent answered, but not as the API says (unexpected status, malformed JSON)."""

    kind = "protocol"


class UpstreamAuthError(UpstreamError):
    """The credentials were refused (`Fails.` or 401). Retrying only brings an IP ban closer."""

    kind = "auth_failed"


class UpstreamBanned(UpstreamAuthError):
    """qBittorrent banned our IP after too many failed logins."""

    kind = "banned"
