"""Pure parsing of what clients POST to the simulator: form bodies, multipart parts, .torrent files, magnets."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

_DISPOSITION_PARAM = re.compile(rb'(\w+)="([^"]*)"')


@dataclass(slots=True)
class Form:
    """Fields of a query string or request body, plus uploaded files as (filename, content)."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    files: list[tuple[str, bytes]] = field(default_factory=list)

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else default


def parse_urlencoded(data: bytes | str) -> dict[str, list[str]]:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return parse_qs(text, keep_blank_values=True)


def parse_body(content_type: str, body: bytes) -> Form:
    mime, _, params = content_type.partition(";")
    mime = mime.strip().lower()
    if mime == "multipart/form-data":
        match = re.search(r'boundary="?([^";]+)"?', params)
        if match is None:
            raise ValueError("multipart body without boundary")
        return parse_multipart(body, match.group(1).encode("latin-1"))
    if mime == "application/x-www-form-urlencoded" or (not mime and body):
        return Form(fields=parse_urlencoded(body))
    return Form()


def parse_multipart(body: bytes, boundary: bytes) -> Form:
    form = Form()
    for part in body.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, sep, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("multipart part without header block")
        content = content.removesuffix(b"\r\n")
        params: dict[bytes, bytes] = {}
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-disposition":
                params = {k.lower(): v for k, v in _DISPOSITION_PARAM.findall(value)}
        field_name = params.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in params:
            form.files.append((params[b"filename"].decode("utf-8", "replace"), content))
        else:
            form.fields.setdefault(field_name, []).append(content.decode("utf-8", "replace"))
    return form


@dataclass(frozen=True, slots=True)
class TorrentMeta:
    """What the simulator needs from a .torrent file or a magnet link."""

    infohash: str
    name: str
    size: int
    trackers: tuple[str, ...]
    has_metadata: bool = True


class InvalidTorrent(ValueError):
    pass


def parse_torrent(data: bytes) -> TorrentMeta:
    """Read a v1 .torrent: info-hash (SHA-1 of the bencoded info dict), name, total size, trackers."""
    try:
        value, end, info_span = _bdecode(data, 0, top=True)
    except (IndexError, ValueError) as exc:
        raise InvalidTorrent(str(exc)) from exc
    if end != len(data) or not isinstance(value, dict) or info_span is None:
        raise InvalidTorrent("not a bencoded dict with an info dict")
    info = value.get(b"info")
    name = info.get(b"name") if isinstance(info, dict) else None
    if not isinstance(info, dict) or not isinstance(name, bytes):
        raise InvalidTorrent("info dict without name")
    length = info.get(b"length")
    files = info.get(b"files")
    if isinstance(length, int):
        size = length
    elif isinstance(files, list):
        size = 0
        for f in files:
            file_length = f.get(b"length") if isinstance(f, dict) else None
            size += file_length if isinstance(file_length, int) else 0
    else:
        raise InvalidTorrent("info dict without length or files")
    trackers: list[str] = []
    tiers = value.get(b"announce-list")
    announce = value.get(b"announce")
    if isinstance(tiers, list):
        for tier in tiers:
            if isinstance(tier, list):
                trackers.extend(url.decode("utf-8", "replace") for url in tier if isinstance(url, bytes))
    elif isinstance(announce, bytes):
        trackers = [announce.decode("utf-8", "replace")]
    return TorrentMeta(
        infohash=hashlib.sha1(data[info_span[0] : info_span[1]]).hexdigest(),
        name=name.decode("utf-8", "replace"),
        size=size,
        trackers=tuple(dict.fromkeys(trackers)),
    )


def parse_magnet(uri: str) -> TorrentMeta | None:
    """A ``magnet:?xt=urn:btih:...`` link, or None if it is not one."""
    if not uri.startswith("magnet:?"):
        return None
    params = parse_qs(uri[len("magnet:?") :], keep_blank_values=True)
    infohash = None
    for xt in params.get("xt", []):
        if xt.lower().startswith("urn:btih:"):
            raw = xt[len("urn:btih:") :]
            if re.fullmatch(r"[0-9a-fA-F]{40}", raw):
                infohash = raw.lower()
            elif re.fullmatch(r"[A-Za-z2-7]{32}", raw):
                infohash = base64.b32decode(raw.upper()).hex()
    if infohash is None:
        return None
    name = unquote(params.get("dn", [""])[-1]) or infohash
    return TorrentMeta(
        infohash=infohash, name=name, size=0, trackers=tuple(dict.fromkeys(params.get("tr", []))), has_metadata=False
    )


_Bencoded = int | bytes | list["_Bencoded"] | dict[bytes, "_Bencoded"]


def _bdecode(data: bytes, pos: int, *, top: bool = False) -> tuple[_Bencoded, int, tuple[int, int] | None]:
    """Decode one value at ``pos``; at the top level also return the byte span of the ``info`` value."""
    lead = data[pos : pos + 1]
    if lead == b"i":
        end = data.index(b"e", pos)
        return int(data[pos + 1 : end]), end + 1, None
    if lead.isdigit():
        colon = data.index(b":", pos)
        length = int(data[pos:colon])
        start = colon + 1
        if start + length > len(data):
            raise ValueError("string runs past the end")
        return data[start : start + length], start + length, None
    if lead == b"l":
        items: list[_Bencoded] = []
        pos += 1
        while data[pos : pos + 1] != b"e":
            item, pos, _ = _bdecode(data, pos)
            items.append(item)
        return items, pos + 1, None
    if lead == b"d":
        out: dict[bytes, _Bencoded] = {}
        span = None
        pos += 1
        while data[pos : pos + 1] != b"e":
            key, pos, _ = _bdecode(data, pos)
            if not isinstance(key, bytes):
                raise ValueError("dict key is not a string")
            start = pos
            out[key], pos, _ = _bdecode(data, pos)
            if top and key == b"info":
                span = (start, pos)
        return out, pos + 1, span
    raise ValueError(f"bad bencode at byte {pos}")
