"""MySQL/MariaDB DSNs (`mysql://user:password@host:port/database`, `mariadb://` too), parsed once
at config load for the `type: mysql` source and destination alike. No message ever quotes the DSN
or its password. The password may be written raw: the LAST `@` ends the credentials, the user ends
at the first `:`; `%XX` is a percent-escape."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

_SCHEMES = ("mysql://", "mariadb://")
_TAIL = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._\-%~]*)(?::(?P<port>\d{1,5}))?"
                   r"(?:/(?P<db>[^?#@/]*))?(?:\?(?P<query>[^#@]*))?$")


class MysqlDsnError(ValueError):
    """The DSN cannot be parsed; the message never contains the DSN or its password."""


@dataclass(frozen=True)
class MysqlParams:
    """Where and as whom to connect; `where()` is what logs and errors may show."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None

    def where(self) -> str:
        return f"{self.host}:{self.port}/{self.database or ''}"


def parse_mysql_dsn(dsn: str) -> MysqlParams:
    """mysql://user:password@host:port/database (mariadb:// too); MysqlDsnError saying what is wrong."""
    text = dsn.strip()
    scheme = next((s for s in _SCHEMES if text.lower().startswith(s)), None)
    if scheme is None:
        raise MysqlDsnError("expected mysql://user:password@host:port/database")
    rest = text[len(scheme):]
    userinfo, at, hostpart = rest.rpartition("@")
    tail = _TAIL.match(hostpart)
    if tail is None:
        raise MysqlDsnError("the host, port or database of the DSN is not valid (write a password holding '@' "
                            "or '/' %-encoded, or use the host/user/password keys)")
    if tail["query"]:
        raise MysqlDsnError("the DSN takes no ?parameters: use the section's keys (connect_timeout)")
    user = password = None
    if at:
        name, colon, secret = userinfo.partition(":")
        user = unquote(name) or None
        password = unquote(secret) if colon else None
    port = int(tail["port"]) if tail["port"] else 3306
    if not 0 < port < 65536:
        raise MysqlDsnError("the DSN's port is out of range")
    host = unquote(tail["host"]).strip("[]") or "127.0.0.1"
    return MysqlParams(host, port, user, password, unquote(tail["db"]) if tail["db"] else None)
