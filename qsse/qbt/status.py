"""What the rest of the daemon may know about one instance: an immutable, published record."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from qsse.qbt.maindata import MainData


class Health(enum.StrEnum):
    SYNCING = "syncing"  # the loop runs and its last poll succeeded
    IDLE = "idle"  # no loop: nobody depends on this instance
    DOWN = "down"  # the last poll failed (network, protocol, HTTP status)
    AUTH_FAILED = "auth_failed"  # credentials refused or IP banned; retried slowly


@dataclass(frozen=True, slots=True)
class InstanceState:
    """One instance as last published by its sync loop. Never mutated; replaced on each change."""

    instance_id: int
    name: str
    health: Health = Health.IDLE
    data: MainData = field(default_factory=MainData)
    #: qBittorrent's ``app/version`` and ``app/webapiVersion``, once logged in.
    version: str = ""
    webapi_version: str = ""
    #: Unix time of the last successful sync; None until the first one.
    last_success: float | None = None
    #: Unix time at which the loop will poll next, when it runs.
    next_poll: float | None = None
    last_error: str | None = None
    #: Seconds until the next attempt after a failure (the stream-error's retryInSeconds).
    retry_in: float | None = None
    #: Seconds the last successful poll took (request + merge).
    sync_duration: float | None = None

    @property
    def connected(self) -> bool:
        return self.health is Health.SYNCING
