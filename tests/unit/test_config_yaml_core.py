"""Plain YAML scalars are read by the YAML 1.2 core schema, and an integer setting takes only an
integer: PyYAML's YAML 1.1 read `health_port: 1:30` as 90 (sexagesimal) and `0755` as 493
(octal), and pydantic took `8080.0` for the port 8080 (issue 8, item 12)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd import cli
from conduitd.configfile import load_config
from conduitd.configyaml import read_yaml
from conduitd.errors import ConfigError

GOOD = """\
service:
  health_port: 0
sources:
  - name: files
    type: file
    path: data/*.jsonl
  - name: k
    type: kafka
    brokers: "localhost:9092"
    topics: [orders]
    group_id: g
    client: {client.id: "x"}
destinations:
  - name: lite
    type: sqlite
    path: out.db
resources:
  - name: orders
    source: files
    destination: lite
    mode: upsert
    unique_key: [id]
    batch: {max_rows: 1000, max_bytes: 8MiB, max_wait: 250ms}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conduitd.yaml"
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    return str(caught.value)


def test_the_base_config_loads(tmp_path: Path) -> None:
    load_config(write(tmp_path, GOOD), {})


# What YAML 1.1 reads as another number (or a boolean), and what YAML 1.2 reads.
YAML_11_NUMBERS = st.one_of(
    st.tuples(st.integers(0, 99), st.integers(0, 59)).map(lambda t: f"{t[0]}:{t[1]:02d}"),
    st.tuples(st.integers(0, 9), st.integers(0, 59), st.integers(0, 59)).map(lambda t: f"{t[0]}:{t[1]:02d}:{t[2]:02d}"),
    st.integers(1, 7777).map(lambda n: f"0{n:o}"),
    st.integers(1, 99).map(lambda n: f"0b{n:b}"),
    st.integers(1, 65).map(lambda n: f"{n}_000"),
)
INTEGER = re.compile(r"^[-+]?[0-9]+$")


@settings(max_examples=200)
@given(text=YAML_11_NUMBERS | st.integers(0, 70000).map(str) | st.integers(0, 70000).map(lambda n: f"{n}.0")
       | st.sampled_from(["1e3", "8.08e3", ".inf", ".nan", "-1", "+80", "0o17", "0x50", "yes", "on", "~"]))
def test_a_port_is_the_integer_as_written_or_a_config_error_with_file_key_and_line(text: str,
                                                                                   tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("health_port: 0", f"health_port: {text}"))
    try:
        port = load_config(path, {}).service.health_port
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}:2: service.health_port: "), str(exc)
        assert "Traceback" not in str(exc)
        return
    if text == "~":
        assert port is None
    elif text.startswith(("0o", "0x")):
        assert port == int(text[2:], 8 if text[1] == "o" else 16)  # YAML 1.2's own spellings
    else:
        assert INTEGER.match(text.replace("_", "")), f"{text!r} was read as {port}"
        assert port == int(text, 10), f"{text!r} was read as {port}"  # 0755 is 755, not 493


@pytest.mark.parametrize("text", ["1:30", "8080.0", "8.08e3", "'8080.0'", "1_0:00"])
def test_a_sexagesimal_or_fractional_port_is_refused(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, GOOD.replace("health_port: 0", f"health_port: {text}"))
    assert error_of(path).startswith(f"{path}:2: service.health_port: ")


@pytest.mark.parametrize("old, new, key, line", [
    ("max_rows: 1000", "max_rows: 1000.0", "resources[0].batch.max_rows", 23),
    ("max_rows: 1000", "max_rows: 1e3", "resources[0].batch.max_rows", 23),
    ("group_id: g\n", "group_id: g\n    poll_records: 5.0e4\n", "sources[1].poll_records", 12),
])
def test_every_integer_setting_refuses_a_float(tmp_path: Path, old: str, new: str, key: str, line: int) -> None:
    path = write(tmp_path, GOOD.replace(old, new))
    assert error_of(path).startswith(f"{path}:{line}: {key}: expected an integer")


def test_a_float_port_exits_2_naming_file_key_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD.replace("health_port: 0", "health_port: 8080.0"))
    assert cli.main(["validate", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2: service.health_port: expected an integer" in err and "Traceback" not in err


def test_a_variable_still_gives_an_integer_as_text(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("health_port: 0", "health_port: ${PORT}"))
    assert load_config(path, {"PORT": "8080"}).service.health_port == 8080
    with pytest.raises(ConfigError, match=r":2: service.health_port: expected an integer"):
        load_config(path, {"PORT": "8080.0"})


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "y", "n", "Yes", "NO", "On", "OFF"])
def test_yes_no_on_off_are_text_but_still_booleans_where_a_boolean_is_expected(tmp_path: Path, word: str) -> None:
    text = (GOOD.replace("table: orders\n", "").replace("    mode: upsert\n", f"    table: {word}\n    mode: upsert\n")
            .replace('client.id: "x"', f"client.id: {word}")
            + f"    deletes: {{tombstone: {word}}}\n")
    config = load_config(write(tmp_path, text), {})
    assert config.resources[0].table_name == word  # YAML 1.1 made it a boolean: a config error
    assert config.sources[1].client["client.id"] == word  # YAML 1.1 sent librdkafka "true"/"false"
    assert config.resources[0].deletes.tombstone is (word.lower() in ("yes", "on", "y"))


def test_scalars_follow_the_yaml_1_2_core_schema(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("a: 1:30\nb: 0755\nc: 1e3\nd: 2026-01-31\ne: TRUE\nf: ~\ng: 0o17\nh: 0x1F\ni: -.inf\nj: yes\n"
                    "k: 1_000\nl: 0b11\nm: +12\nn: .5\n")
    data, lines = read_yaml(path)
    assert data == {"a": "1:30", "b": 755, "c": 1000.0, "d": "2026-01-31", "e": True, "f": None, "g": 15, "h": 31,
                    "i": float("-inf"), "j": "yes", "k": "1_000", "l": "0b11", "m": 12, "n": 0.5}
    assert lines[("d",)] == 4
