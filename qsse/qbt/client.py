"""The httpx2 adapter for one qBittorrent instance: login, transparent re-login, error vocabulary.

Each :class:`QbtClient` owns its own connection pool and cookie jar, hence its own SID:
qBittorrent keeps ``rid`` state per session, and two pollers sharing one SID would both get
full updates forever. Library and network errors are translated here, once, into
:mod:`qsse.errors`; nothing above this module sees an httpx2 exception.

Timeouts: the connect timeout is the instance's ``timeout`` knob; the whole-request deadline
belongs to the caller (the sync loop wraps each poll in ``trio.fail_after``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Self

import httpx2

from qsse.config import InstanceConfig
from qsse.errors import (
    UpstreamAuthError,
    UpstreamBanned,
    UpstreamProtocolError,
    UpstreamUnavailable,
)


@dataclass(frozen=True, slots=True)
class AppInfo:
    version: str
    webapi_version: str


class QbtClient:
    """One logged-in session with one qBittorrent WebUI. Use as ``async with QbtClient(cfg) as c``."""

    def __init__(self, cfg: InstanceConfig, *, transport: httpx2.AsyncBaseTransport | None = None) -> None:
        self.cfg = cfg
        auth = httpx2.BasicAuth(cfg.basic_auth.username, cfg.basic_auth.password) if cfg.basic_auth else None
        self._http = httpx2.AsyncClient(
            base_url=cfg.url + "/api/v2/",
            auth=auth,
            verify=cfg.verify_tls,
            # Only the connect phase has a knob; the caller bounds the whole request.
            timeout=httpx2.Timeout(None, connect=cfg.timeout),
            headers={"Accept-Encoding": "gzip", "User-Agent": "qsse"},
            transport=transport,
        )
        self.app_info: AppInfo | None = None
        self._authenticated = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def logged_in(self) -> bool:
        return self._authenticated and self.app_info is not None

    async def login(self) -> AppInfo:
        """Log in and read the versions. Raises UpstreamAuthError/UpstreamBanned on refusal."""
        self.app_info = None
        self._authenticated = False
        self._http.cookies.clear()
        response = await self._send(
            "POST", "auth/login", data={"username": self.cfg.username, "password": self.cfg.password}
        )
        body = response.text.strip()
        if response.status_code == 403 and "banned" in body.lower():
            raise UpstreamBanned(f"qBittorrent banned this IP after too many failed logins: {body}")
        if response.status_code == 401 or (response.is_success and body == "Fails."):
            raise UpstreamAuthError(f"qBittorrent refused the credentials of user {self.cfg.username!r}")
        if not response.is_success:
            raise UpstreamProtocolError(f"login answered HTTP {response.status_code}: {body[:200]}")
        self._authenticated = True
        version = (await self._get("app/version", relogin=False)).text.strip()
        webapi = (await self._get("app/webapiVersion", relogin=False)).text.strip()
        self.app_info = AppInfo(version=version, webapi_version=webapi)
        return self.app_info

    async def maindata(self, rid: int) -> bytes:
        """The raw ``sync/maindata`` body for ``rid`` (decompressed, not parsed)."""
        return (await self._get("sync/maindata", params={"rid": rid})).content

    async def _get(self, path: str, params: dict[str, int] | None = None, *, relogin: bool = True) -> httpx2.Response:
        if not self._authenticated:
            await self.login()
        response = await self._send("GET", path, params=params)
        if response.status_code == 403 and relogin:
            # The SID expired or qBittorrent restarted: log in again once, transparently.
            await self.login()
            response = await self._send("GET", path, params=params)
        if not response.is_success:
            raise UpstreamProtocolError(f"{path} answered HTTP {response.status_code}")
        return response

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, int] | None = None,
        data: dict[str, str] | None = None,
    ) -> httpx2.Response:
        try:
            response = await self._http.request(method, path, params=params, data=data)
            await response.aread()
        except httpx2.ConnectTimeout as exc:
            raise UpstreamUnavailable(f"connection to {self.cfg.url} timed out") from exc
        except httpx2.ConnectError as exc:
            raise UpstreamUnavailable(f"cannot connect to {self.cfg.url}: {_reason(exc)}") from exc
        except httpx2.DecodingError as exc:
            raise UpstreamProtocolError(f"{path}: undecodable body: {exc}") from exc
        except httpx2.TimeoutException as exc:
            raise UpstreamUnavailable(f"{path} timed out") from exc
        except httpx2.TransportError as exc:
            raise UpstreamUnavailable(f"{path}: {_reason(exc)}") from exc
        return response


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    return text
