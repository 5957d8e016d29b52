"""The qBittorrent client's error vocabulary and re-login, against an in-process transport and a real ban."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

import httpx2
import pytest
from testbed import QbtFactory

from qsse.config import BasicAuth, InstanceConfig
from qsse.errors import UpstreamAuthError, UpstreamBanned, UpstreamProtocolError, UpstreamUnavailable
from qsse.qbt.client import QbtClient
from qsse.qbt.maindata import decode

CFG = InstanceConfig(id=1, name="x", url="http://qbt.test", username="u", password="p")


class FakeQbt:
    """Just enough of the WebUI: one valid SID at a time, which :meth:`expire` invalidates."""

    def __init__(self, login: Callable[[httpx2.Request], httpx2.Response] | None = None) -> None:
        self.sid = 0
        self.requests: list[httpx2.Request] = []
        self._login = login

    def expire(self) -> None:
        self.sid += 1000

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/api/v2/auth/login":
            if self._login is not None:
                return self._login(request)
            self.sid += 1
            return httpx2.Response(200, text="Ok.", headers={"Set-Cookie": f"SID=s{self.sid}; HttpOnly; path=/"})
        if request.headers.get("Cookie") != f"SID=s{self.sid}":
            return httpx2.Response(403, text="Forbidden")
        if path == "/api/v2/app/version":
            return httpx2.Response(200, text="v5.0.5")
        if path == "/api/v2/app/webapiVersion":
            return httpx2.Response(200, text="2.11.2")
        if path == "/api/v2/sync/maindata":
            return httpx2.Response(200, json={"rid": int(request.url.params["rid"]) + 1})
        return httpx2.Response(404, text="Not Found")


async def test_login_reads_versions_and_asks_for_gzip() -> None:
    fake = FakeQbt()
    async with QbtClient(CFG, transport=httpx2.MockTransport(fake)) as client:
        info = await client.login()
        assert (info.version, info.webapi_version) == ("v5.0.5", "2.11.2")
        assert decode(await client.maindata(7)) == {"rid": 8}
    login = fake.requests[0]
    assert login.method == "POST" and login.content == b"username=u&password=p"
    assert all("gzip" in r.headers["Accept-Encoding"] for r in fake.requests)


async def test_expired_session_relogs_in_transparently() -> None:
    fake = FakeQbt()
    async with QbtClient(CFG, transport=httpx2.MockTransport(fake)) as client:
        await client.login()
        fake.expire()
        assert decode(await client.maindata(1)) == {"rid": 2}
    paths = [r.url.path.rsplit("/", 1)[-1] for r in fake.requests]
    assert paths == ["login", "version", "webapiVersion", "maindata", "login", "version", "webapiVersion",
                     "maindata"]


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (httpx2.Response(200, text="Fails."), UpstreamAuthError, "refused the credentials of user 'u'"),
        (httpx2.Response(401, text="Unauthorized"), UpstreamAuthError, "refused the credentials"),  # 5.2
        (httpx2.Response(403, text="Your IP address has been banned after too many failed authentication attempts."),
         UpstreamBanned, "banned this IP"),
        (httpx2.Response(500, text="oops"), UpstreamProtocolError, "login answered HTTP 500"),
    ],
)
async def test_login_refusals(answer: httpx2.Response, error: type[Exception], text: str) -> None:
    fake = FakeQbt(login=lambda request: answer)
    async with QbtClient(CFG, transport=httpx2.MockTransport(fake)) as client:
        with pytest.raises(error, match=text):
            await client.login()
        assert not client.logged_in


async def test_any_2xx_login_is_success() -> None:
    # qBittorrent 5.2 answers 204 with no body to some requests: never compare bodies with "Ok."
    def login(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(204, headers={"Set-Cookie": "SID=s0; path=/"})

    async with QbtClient(CFG, transport=httpx2.MockTransport(FakeQbt(login=login))) as client:
        assert (await client.login()).version == "v5.0.5"


async def test_unexpected_status_and_malformed_json() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("login"):
            return httpx2.Response(200, text="Ok.")
        if request.url.path.endswith("maindata"):
            return httpx2.Response(502 if request.url.params["rid"] == "1" else 200, text="<html>")
        return httpx2.Response(200, text="v4.5.2")

    async with QbtClient(CFG, transport=httpx2.MockTransport(handler)) as client:
        with pytest.raises(UpstreamProtocolError, match="sync/maindata answered HTTP 502"):
            await client.maindata(1)
        with pytest.raises(UpstreamProtocolError, match="malformed JSON"):
            decode(await client.maindata(2))


async def test_basic_auth_in_front() -> None:
    seen: list[str | None] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers.get("Authorization"))
        return FakeQbt()(request) if request.url.path.endswith("login") else httpx2.Response(200, text="v")

    cfg = InstanceConfig(id=1, name="x", url="http://qbt.test", basic_auth=BasicAuth("proxy", "secret"))
    async with QbtClient(cfg, transport=httpx2.MockTransport(handler)) as client:
        await client.login()
    assert set(seen) == {"Basic " + base64.b64encode(b"proxy:secret").decode()}


async def test_connection_refused_is_unavailable() -> None:
    cfg = InstanceConfig(id=1, name="x", url="http://127.0.0.1:1")
    async with QbtClient(cfg) as client:
        with pytest.raises(UpstreamUnavailable, match=re.escape("cannot connect to http://127.0.0.1:1")):
            await client.login()


async def test_real_ban_is_recognised(qbt_factory: QbtFactory) -> None:
    inst = qbt_factory(max_auth_fail_count=1)
    cfg = InstanceConfig(id=1, name=inst.name, url=inst.url, username=inst.username, password="wrong")
    async with QbtClient(cfg) as client:
        with pytest.raises(UpstreamAuthError) as first:
            await client.login()
        assert not isinstance(first.value, UpstreamBanned)
        with pytest.raises(UpstreamBanned):
            await client.login()
