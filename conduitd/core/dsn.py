"""PostgreSQL connection strings, both libpq forms, parsed here into connect parameters.

    postgresql://user:password@host:port,host2:port2/dbname?sslmode=require
    host=db port=5432 user=app password='it''s \\'quoted\\'' dbname=wh sslmode=require

asyncpg's own DSN parser is not used on what the user wrote: it fails with a traceback that
quotes part of the password when the password holds a character a URL reserves, or a port is
out of range. Parsing happens once, at config load, so a bad DSN is a config error naming the
key; no message here ever contains the DSN or any part of the password.

A password may be written raw in a URL (`postgresql://app:p@ss/w:rd#1@db/wh`): the LAST `@`
followed by a host list ends the credentials, the user ends at the first `:`. `%XX` (two hex
digits) is a percent-escape as in every URL; any other `%` is a literal percent sign. A
database name or a parameter holding `@` must then be written `%40`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes, urlencode

_SCHEMES = ("postgresql://", "postgres://")
_HOSTLIST = r"[A-Za-z0-9._\-:\[\],%~]*"
_URL_TAIL = re.compile(rf"^(?P<hosts>{_HOSTLIST})(?:/(?P<db>[^?#@]*))?(?:\?(?P<query>[^#@]*))?$")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# Keywords of libpq that asyncpg understands; the first group is read here, the rest passed on.
_OWN_KEYS = {"host", "port", "user", "password", "dbname", "database", "connect_timeout"}
_PASSED_KEYS = {
    "sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword", "sslnegotiation",
    "ssl_min_protocol_version", "ssl_max_protocol_version", "target_session_attrs", "krbsrvname",
    "gsslib", "passfile", "service", "application_name",
}
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class DsnError(ValueError):
    """The DSN cannot be parsed; the message never contains the DSN or its password."""


@dataclass(frozen=True)
class ConnectParams:
    """What a DSN says, ready for `asyncpg.connect(**params.connect_kwargs())`."""

    hosts: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    connect_timeout: float | None = None
    params: dict[str, str] = field(default_factory=dict, repr=False)
    """Other libpq parameters (sslmode, ...), handed to asyncpg as a DSN of only them."""

    def secrets(self) -> list[str]:
        """The values that must never be shown: the password and the TLS key's password."""
        return [v for v in (self.password, self.params.get("sslpassword")) if v]

    def where(self) -> str:
        """host:port/db without user or password: what logs and errors may name."""
        hosts = ",".join(
            f"{h}:{p}" if p else h
            for h, p in zip(self.hosts or ("localhost",), self.ports or (None,) * max(1, len(self.hosts)),
                            strict=False))
        return f"{hosts}/{self.database}" if self.database else hosts

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of asyncpg.connect; the password goes as a keyword, never in a DSN."""
        kwargs: dict[str, Any] = {"dsn": "postgresql://?" + urlencode(self.params) if self.params else None}
        if self.hosts:
            kwargs["host"] = list(self.hosts)
        if self.ports:
            kwargs["port"] = list(self.ports)
        for key in ("user", "password", "database"):
            if getattr(self, key) is not None:
                kwargs[key] = getattr(self, key)
        return kwargs


def parse_dsn(dsn: str) -> ConnectParams:
    """Parse either form; raise DsnError naming what is wrong (never the value)."""
    if "\x00" in dsn:
        raise DsnError("the DSN contains a NUL character")
    text = dsn.strip()
    if text.startswith(_SCHEMES):
        return _from_url(text.split("://", 1)[1])
    if "://" in text.split("=", 1)[0] or not text:
        raise DsnError("expected postgresql://user:password@host:port/db or 'host=... user=... password=...'")
    return _from_keywords(text)


def _from_url(rest: str) -> ConnectParams:
    userinfo: str | None = None
    tail = _URL_TAIL.match(rest)
    if tail is None or "@" in rest:
        # The credentials end at the last '@' after which a host list and database follow.
        for at in reversed([i for i, c in enumerate(rest) if c == "@"]):
            tail = _URL_TAIL.match(rest[at + 1:])
            if tail is not None:
                userinfo = rest[:at]
                break
        if tail is None and "@" not in rest:
            raise DsnError("the host list, port or database name of the DSN is not valid")
        if tail is None:
            raise DsnError("cannot tell the host from the password: write the password %-encoded "
                           "(e.g. '@' as %40), or use the form 'host=... password=...'")
    values: dict[str, str] = {}
    if userinfo is not None:
        user, colon, password = userinfo.partition(":")
        values["user"] = _decode(user, "user")
        if colon:
            values["password"] = _decode(password, "password")
    if tail["db"]:
        values["dbname"] = _decode(tail["db"], "database name")
    hosts, ports = _hostlist(tail["hosts"])
    for pair in (tail["query"] or "").split("&"):
        if not pair:
            continue
        key, equals, value = pair.partition("=")
        if not equals:
            raise DsnError(f"parameter {_decode(key, 'parameter')!r} has no value")
        values[_decode(key, "parameter")] = _decode(value, "parameter value")
    return _build(values, hosts, ports)


def _hostlist(text: str) -> tuple[list[str], list[str]]:
    hosts, ports = [], []
    for spec in text.split(",") if text else []:
        if spec.startswith("["):
            addr, bracket, port = spec[1:].partition("]")
            if not bracket or (port and not port.startswith(":")):
                raise DsnError("an IPv6 host must be written [address] or [address]:port")
            port = port[1:]
        else:
            addr, _, port = spec.partition(":")
        hosts.append(_decode(addr, "host"))
        ports.append(port)
    return hosts, ports


def _decode(text: str, what: str) -> str:
    """Percent-decode valid %XX escapes, keep any other % as it is."""
    if "%" not in text:
        return text
    raw = bytearray()
    last = 0
    for escape in _ESCAPE.finditer(text):
        raw += text[last:escape.start()].encode()
        raw += unquote_to_bytes(escape.group())
        last = escape.end()
    raw += text[last:].encode()
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise DsnError(f"the {what} has %-escapes that are not UTF-8") from None


def _from_keywords(text: str) -> ConnectParams:
    """libpq's `key=value` list: values are bare words or single-quoted, with \\ escaping."""
    values: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        match = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*").match(text, i)
        if match is None:
            raise DsnError(f"expected key=value at character {i + 1} of the DSN")
        key, i = match.group(1), match.end()
        value, i = _keyword_value(text, i, key)
        values[key] = value
    hosts = values.pop("host", "")
    ports = values.pop("port", "")
    host_list = hosts.split(",") if hosts else []
    port_list = ports.split(",") if ports else []
    return _build(values, host_list, port_list)


def _keyword_value(text: str, i: int, key: str) -> tuple[str, int]:
    out: list[str] = []
    if i < len(text) and text[i] == "'":
        i += 1
        while True:
            if i >= len(text):
                raise DsnError(f"the value of {key!r} has no closing quote")
            char = text[i]
            if char == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 2
            elif char == "'":
                return "".join(out), i + 1
            else:
                out.append(char)
                i += 1
    while i < len(text) and not text[i].isspace():
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out), i


def _build(values: dict[str, str], hosts: list[str], ports: list[str]) -> ConnectParams:
    unknown = sorted(set(values) - _OWN_KEYS - _PASSED_KEYS)
    if unknown:
        raise DsnError(f"unknown DSN parameter(s) {', '.join(map(repr, unknown))}; known: "
                       + ", ".join(sorted(_OWN_KEYS | _PASSED_KEYS - {'password'})))
    port_numbers = [_port(p) for p in ports]
    if "port" in values:
        port_numbers = [_port(p) for p in values.pop("port").split(",")]
    if "host" in values:
        hosts = values.pop("host").split(",")
    known_ports = [p for p in port_numbers if p is not None]
    if known_ports and len(known_ports) != len(port_numbers):
        port_numbers = [p or 5432 for p in port_numbers]
    if len(known_ports) > 1 and len(known_ports) != len(hosts):
        raise DsnError(f"{len(known_ports)} ports for {len(hosts)} hosts")
    if any(not h for h in hosts) and len(hosts) > 1:
        raise DsnError("an empty host in the host list")
    if values.get("sslmode", "prefer") not in _SSLMODES:
        raise DsnError(f"sslmode must be one of {', '.join(_SSLMODES)}")
    timeout = values.pop("connect_timeout", None)
    dbname, database = values.pop("dbname", None), values.pop("database", None)
    return ConnectParams(
        hosts=tuple(hosts) if any(hosts) else (),
        ports=tuple(p for p in port_numbers if p is not None),
        user=values.pop("user", None) or None,
        password=values.pop("password", None),
        database=dbname or database or None,
        connect_timeout=_timeout(timeout) if timeout is not None else None,
        params=values,
    )


def _port(text: str) -> int | None:
    if text == "":
        return None
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise DsnError("a port must be a number from 1 to 65535")
    return int(text)


def _timeout(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise DsnError("connect_timeout must be a number of seconds") from None
    if not 0 < seconds < 86400:
        raise DsnError("connect_timeout must be above 0 and below a day")
    return seconds
