"""Both DSN forms parse for any password, and `redact` masks a secret however it is written
(issue 8, item 10). The connection itself is tested against a real server in
tests/integration/test_secrets.py."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from conduitd.config import KafkaSourceConfig, PostgresDestinationConfig
from conduitd.core import redact as redact_module
from conduitd.core.dsn import DsnError, parse_dsn
from conduitd.core.redact import redact, redact_value, remember
from conduitd.errors import ConduitError, describe
from conduitd.ops.logs import JsonFormatter, TextFormatter

PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
# Every printable ASCII punctuation character, spaces, letters and digits, and some non-ASCII.
PASSWORDS = st.text(alphabet=st.sampled_from(PUNCTUATION + " abcXYZ019éß€日本🙂"), min_size=1, max_size=24)
SECRETS = PASSWORDS.filter(lambda p: len(p) >= 3 and "*" not in p)


def keyword_quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def unambiguous_raw(password: str) -> bool:
    """Written raw in a URL, a password reads back as itself unless it holds a %XX escape."""
    return re.search(r"%[0-9A-Fa-f]{2}", password) is None


@pytest.fixture(autouse=True)
def no_known_secrets() -> Iterator[None]:
    redact_module.forget_all()
    yield
    redact_module.forget_all()


@settings(max_examples=200)
@given(password=PASSWORDS, port=st.integers(1, 65535))
def test_any_password_parses_in_both_forms(password: str, port: int) -> None:
    expected = ("app", password, ("db.example",), (port,), "wh")
    forms = [f"host=db.example port={port} user=app password={keyword_quoted(password)} dbname=wh",
             f"postgresql://app:{quote(password, safe='')}@db.example:{port}/wh"]
    if unambiguous_raw(password):
        forms.append(f"postgresql://app:{password}@db.example:{port}/wh")
    for dsn in forms:
        params = parse_dsn(dsn)
        assert (params.user, params.password, params.hosts, params.ports, params.database) == expected, dsn
        assert params.where() == f"db.example:{port}/wh"
        assert params.connect_kwargs()["password"] == password
        assert params.connect_kwargs()["dsn"] is None  # nothing left for asyncpg's parser


@settings(max_examples=100)
@given(password=SECRETS, port=st.one_of(st.integers(65536, 10**6), st.just(0), st.sampled_from(["x", "-1", "٣"])))
def test_a_bad_port_is_a_dsn_error_that_never_shows_the_password(password: str, port: object) -> None:
    for dsn in (f"postgresql://app:{quote(password, safe='')}@db:{port}/wh",
                f"host=db port={port} user=app password={keyword_quoted(password)}"):
        with pytest.raises(DsnError) as caught:
            parse_dsn(dsn)
        assert password not in str(caught.value) and quote(password, safe="") not in str(caught.value)


@pytest.mark.parametrize("dsn", [
    "postgresql://app:pw@db/wh#frag", "postgresql://app:pw@db/wh?x", "host=db password='unterminated",
    "mysql://app:pw@db/wh", "host=db bogus=1", "postgresql://app:pw@db/wh?sslmode=sometimes",
    "postgresql://[::1/wh", "postgresql://app:pw@db/wh?connect_timeout=never", "=x", "",
])
def test_malformed_dsns_are_dsn_errors(dsn: str) -> None:
    with pytest.raises(DsnError) as caught:
        parse_dsn(dsn)
    assert "pw" not in str(caught.value).replace("password", "")


def test_libpq_forms() -> None:
    params = parse_dsn("postgresql://u@a:1,b:2/db?sslmode=require&connect_timeout=3&application_name=x")
    assert (params.hosts, params.ports, params.connect_timeout) == (("a", "b"), (1, 2), 3.0)
    assert params.params == {"sslmode": "require", "application_name": "x"}
    assert parse_dsn("postgresql:///db?host=/var/run/postgresql").hosts == ("/var/run/postgresql",)
    assert parse_dsn("postgresql://[::1]:5433/db").hosts == ("::1",)
    assert parse_dsn("host = h  password = a\\ b").password == "a b"
    assert "secret" not in repr(parse_dsn("postgresql://u:secret@h/db"))


@settings(max_examples=150)
@given(secret=SECRETS, before=st.text(max_size=10), after=st.text(max_size=10))
def test_a_remembered_secret_is_masked_in_every_spelling(secret: str, before: str, after: str) -> None:
    remember([secret])
    for spelling in (secret, repr(secret), json.dumps(secret), json.dumps(secret, ensure_ascii=False),
                     quote(secret, safe=""), quote(secret)):
        assume(secret not in before + after)
        assert secret not in redact(before + spelling + after)
    assert secret not in json.dumps(redact_value({"a": [f"x{secret}y"], secret: 1}))


@settings(max_examples=150)
@given(password=SECRETS.filter(lambda p: not any(c.isspace() for c in p)), host=st.sampled_from(["db", "10.0.0.1"]))
def test_a_dsn_password_nobody_registered_is_masked_by_its_shape(password: str, host: str) -> None:
    url = f"connect to postgresql://app:{password}@{host}:5432/wh failed"
    assert password not in redact(url).replace("postgresql://app:", "").replace(f"@{host}:5432/wh", "")
    keywords = f"dsn host={host} password={keyword_quoted(password)} dbname=wh"
    assert password not in redact(keywords).replace(f"host={host}", "").replace("dbname=wh", "")


def test_config_secrets_are_remembered_when_the_config_is_parsed() -> None:
    PostgresDestinationConfig.model_validate(
        {"name": "pg", "type": "postgres", "dsn": "host=db user=app password='pa ss\\'wo rd' dbname=wh"})
    KafkaSourceConfig.model_validate({
        "name": "k", "type": "kafka", "brokers": "b:9092", "topics": ["t"], "group_id": "g",
        "client": {"sasl.password": "kafka-secret", "ssl.key.password": "key-secret", "sasl.username": "bob"}})
    text = redact("pa ss'wo rd / kafka-secret / key-secret / bob")
    assert "pa ss'wo rd" not in text and "kafka-secret" not in text and "key-secret" not in text and "bob" in text


def test_logs_and_error_descriptions_are_redacted() -> None:
    remember(["hunter2-secret"])
    record = logging.LogRecord("x", logging.ERROR, "f", 1, "failed with %s", ("hunter2-secret",), None)
    record.dsn = "postgresql://a:hunter2-secret@h/db"
    for formatter in (JsonFormatter(), TextFormatter()):
        assert "hunter2" not in formatter.format(record)
    assert "hunter2" not in describe(ConduitError("password=hunter2-secret"))
    assert "hunter2" not in describe(ValueError("hunter2-secret"))
    assert "hunter2" not in describe(ExceptionGroup("g", [ConduitError("x hunter2-secret")]))
