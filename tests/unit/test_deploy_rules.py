"""The Prometheus alert rules in deploy/prometheus are valid rule files that name only metrics
(and their labels) which conduitd's /metrics exports, and cover lag, DLQ growth and stalls."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import generate_latest

from conduitd.ops.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "deploy" / "prometheus").glob("*.yml"))
SELECTOR = re.compile(r"\b(conduitd_[a-z_]+)\b(\s*\{([^}]*)\})?")
GROUPING = re.compile(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")
DURATION = re.compile(r"^[0-9]+[smhdwy]$")


def exported() -> dict[str, set[str]]:
    """Every sample name /metrics shows, with its label names (each labelled metric touched once)."""
    metrics = Metrics()
    for family in list(metrics.registry._names_to_collectors.values()):
        names = getattr(family, "_labelnames", ())
        if names:
            family.labels(*["x"] * len(names))
    found: dict[str, set[str]] = {}
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, rest = line.partition("{")
            labels = {pair.split("=", 1)[0] for pair in rest.split("}", 1)[0].split(",") if "=" in pair}
            found.setdefault(name.split(" ", 1)[0], set()).update(labels - {"le"})
    return found


def rules() -> list[dict[str, Any]]:
    assert RULES, "no rules file under deploy/prometheus"
    found: list[dict[str, Any]] = []
    for path in RULES:
        document = yaml.safe_load(path.read_text())
        assert set(document) == {"groups"}, path
        for group in document["groups"]:
            assert set(group) <= {"name", "interval", "rules"} and group["name"], path
            found += group["rules"]
    return found


def test_every_rule_is_a_well_formed_alert() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names)), "two alerts have the same name"
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert isinstance(rule["expr"], str) and rule["expr"].count("(") == rule["expr"].count(")"), rule
        assert "for" not in rule or DURATION.match(rule["for"]), rule
        assert rule["labels"]["severity"] in ("warning", "critical"), rule
        assert rule["annotations"]["summary"], rule


def test_rules_name_only_exported_metrics_and_their_labels() -> None:
    samples = exported()
    every_label = set().union(*samples.values()) | {"instance", "job"}
    for rule in rules():
        expr = rule["expr"]
        used = SELECTOR.findall(expr)
        assert used, f"{rule['alert']} names no conduitd metric"
        for name, _, matchers in used:
            assert name in samples, f"{rule['alert']}: {name} is not exported (exported: {sorted(samples)})"
            for matcher in filter(None, (m.strip() for m in matchers.split(","))):
                label = re.split(r"=~|!=|!~|=", matcher, maxsplit=1)[0].strip()
                assert label in samples[name], f"{rule['alert']}: {name} has no label {label!r}"
        for grouping in GROUPING.findall(expr):
            for label in filter(None, (g.strip() for g in grouping.split(","))):
                assert label in every_label, f"{rule['alert']}: no metric has the label {label!r}"


def test_lag_dlq_growth_and_stalls_are_covered() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in rules()}
    assert any("conduitd_source_lag" in e for e in exprs.values())
    assert any("conduitd_dlq_rows_total" in e and "increase(" in e for e in exprs.values())
    assert any("conduitd_last_commit_timestamp_seconds" in e and "conduitd_source_lag" in e
               for e in exprs.values()), "no stall rule (no commit while lag waits)"
