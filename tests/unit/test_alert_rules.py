"""The alert rules (pure): one incident gives one firing alert and one resolved alert, however
often its condition is seen; each condition opens and ends where the table in `rules` says; the
rate limit; and the envelope's signature and Slack blocks."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from conduitd.alertsettings import AlertsConfig, SlackSink, WebhookSink
from conduitd.configfile import load_config
from conduitd.core.redact import redact
from conduitd.errors import ConfigError
from conduitd.ops.alerts.envelope import SIGNATURE_HEADER, envelope, sign, slack_body, verify, webhook_body
from conduitd.ops.alerts.pacing import TokenBucket
from conduitd.ops.alerts.rules import Alert, Rules
from conduitd.ops.metrics import PipelineStatus


def rules(**settings: Any) -> Rules:
    config = AlertsConfig.model_validate({"sinks": [{"type": "webhook", "url": "http://127.0.0.1:1/hook"}],
                                          **settings})
    return Rules(config, {"orders": "sales"})


def state(new: str, previous: str = "running") -> dict[str, Any]:
    return {"kind": "state", "pipeline": "orders", "state": new, "previous": previous}


def batch(outcome: str = "committed", dlq_rows: int = 0) -> dict[str, Any]:
    return {"kind": "batch", "pipeline": "orders", "outcome": outcome, "rows_written": 10, "dlq_rows": dlq_rows}


def status(**fields: Any) -> PipelineStatus:
    return PipelineStatus(name="orders", source="s", destination="d", table="t", started=0.0, **fields)


def kinds(alerts: list[Alert]) -> list[tuple[str, str]]:
    return [(a.kind, a.status) for a in alerts]


def test_an_outage_is_one_failure_alert_and_one_recovery_however_often_it_is_seen() -> None:
    engine = rules(failed_after=0)
    seen: list[Alert] = []
    failing = status(state="retrying", last_error="connection refused")
    seen += engine.on_event(state("retrying"), 100.0, failing)
    for now in range(101, 140):
        seen += engine.on_statuses([failing], float(now))
        seen += engine.on_event(state("retrying", "running"), float(now), failing)
        seen += engine.on_event(batch("retried"), float(now), failing)
    seen += engine.on_event(state("running", "retrying"), 140.0)
    seen += engine.on_event(batch(), 141.0)
    seen += engine.on_statuses([status(state="running", last_commit=141.0)], 142.0)
    assert kinds(seen) == [("pipeline.failed", "firing"), ("pipeline.failed", "resolved")]
    firing, resolved = seen
    assert firing.dedup_key == resolved.dedup_key == "conduitd/sales/orders/pipeline.failed"
    assert firing.incident == resolved.incident and firing.project == "sales"
    assert firing.severity == "critical" and resolved.severity == "info"
    assert "connection refused" in firing.summary and "recovered" in resolved.summary
    assert resolved.details["duration_s"] == 40.0


def test_a_second_outage_is_a_second_incident_with_the_same_dedup_key() -> None:
    engine = rules(failed_after=0)
    seen = [*engine.on_event(state("failed"), 1.0), *engine.on_event(state("running", "starting"), 2.0),
            *engine.on_event(state("failed"), 3.0), *engine.on_event(state("running", "starting"), 4.0)]
    assert kinds(seen) == [("pipeline.failed", "firing"), ("pipeline.failed", "resolved")] * 2
    assert len({a.dedup_key for a in seen}) == 1 and len({a.incident for a in seen}) == 2


def test_retrying_is_a_failure_only_after_failed_after() -> None:
    engine = rules(failed_after="30s")
    failing = status(state="retrying")
    assert engine.on_event(state("retrying"), 0.0, failing) == []
    assert engine.on_statuses([failing], 29.0) == []
    assert kinds(engine.on_statuses([failing], 30.0)) == [("pipeline.failed", "firing")]
    # A blip shorter than failed_after alerts nothing, and forgets its start.
    other = rules(failed_after="30s")
    assert other.on_event(state("retrying"), 0.0) == [] and other.on_event(state("running", "retrying"), 10.0) == []
    assert other.on_event(state("retrying"), 35.0) == [] and other.on_statuses([failing], 50.0) == []


def test_dlq_rows_above_the_threshold_within_the_window() -> None:
    engine = rules(dlq_rows_above=5, dlq_window="60s")
    assert engine.on_event(batch(dlq_rows=3), 0.0) == []
    assert engine.on_event(batch(dlq_rows=2), 10.0) == []  # 5: not above
    opened = engine.on_event(batch(dlq_rows=1), 20.0)
    assert kinds(opened) == [("dlq.threshold", "firing")] and opened[0].details["dlq_rows"] == 6
    assert engine.on_event(batch(dlq_rows=9), 30.0) == []  # the same incident
    assert engine.on_statuses([status(state="running")], 75.0) == []  # 3+2 left the window: 10 still in
    assert kinds(engine.on_statuses([status(state="running")], 91.0)) == [("dlq.threshold", "resolved")]


def test_stalled_while_data_waits_and_not_while_nothing_does() -> None:
    engine = rules(stalled_after="60s")
    waiting = status(state="running", lag={"p0": {"records": 5}}, last_commit=100.0)
    idle = status(state="running", lag={"p0": {"records": 0}}, last_commit=100.0)
    assert engine.on_statuses([idle], 1000.0) == []
    assert engine.on_statuses([waiting], 159.0) == []
    opened = engine.on_statuses([waiting], 161.0)
    assert kinds(opened) == [("pipeline.stalled", "firing")] and "5 records" in opened[0].summary
    assert engine.on_statuses([waiting], 300.0) == []
    assert kinds(engine.on_event(batch(), 301.0)) == [("pipeline.stalled", "resolved")]
    paused = status(state="paused", lag={"p0": {"records": 5}}, last_commit=100.0)
    assert engine.on_statuses([paused], 10_000.0) == []


def test_lag_above_the_threshold_in_its_unit() -> None:
    engine = rules(lag_above=100, lag_unit="seconds", stalled_after=None)
    lagging = status(state="running", lag={"a": {"seconds": 60, "records": 9999}, "b": {"seconds": 50}})
    assert kinds(engine.on_statuses([lagging], 1.0)) == [("lag.threshold", "firing")]
    assert engine.on_statuses([lagging], 2.0) == []
    assert kinds(engine.on_statuses([status(state="running", lag={"a": {"seconds": 1}})], 3.0)) == [
        ("lag.threshold", "resolved")]


def test_checkpoint_conflicts_end_with_the_next_commit() -> None:
    engine = rules()
    assert kinds(engine.on_event(batch("conflict"), 1.0)) == [("checkpoint.conflict", "firing")]
    assert engine.on_event(batch("conflict"), 2.0) == []
    assert kinds(engine.on_event(batch(), 3.0)) == [("checkpoint.conflict", "resolved")]
    assert rules(checkpoint_conflicts=False).on_event(batch("conflict"), 1.0) == []


def test_schema_drift_pending_until_no_change_waits() -> None:
    engine = rules()
    change = {"table": "t", "change": "added", "column": "c", "old": None, "new": "text", "applied": False}
    applied = {**change, "column": "d", "applied": True}
    assert engine.on_statuses([status(state="running", schema_changes=[applied])], 1.0) == []
    opened = engine.on_statuses([status(state="running", schema_changes=[applied, change])], 2.0)
    assert kinds(opened) == [("schema.drift_pending", "firing")]
    assert opened[0].details["changes"][0]["column"] == "c"
    assert engine.on_statuses([status(state="running", schema_changes=[applied, change])], 3.0) == []
    assert kinds(engine.on_statuses([status(state="running")], 4.0)) == [("schema.drift_pending", "resolved")]


def test_only_the_pipelines_named() -> None:
    engine = rules(pipelines=["billing"], failed_after=0)
    assert engine.on_event(state("failed"), 1.0) == []


def test_the_rate_limit_lets_a_burst_through_then_one_per_refill() -> None:
    bucket = TokenBucket(per_minute=3, now=0.0)
    assert [bucket.wait(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.wait(0.0) == 20.0  # one token per 20 s
    assert bucket.wait(10.0) == 10.0
    assert bucket.wait(20.0) == 0.0 and bucket.wait(20.0) > 0
    assert [bucket.wait(1000.0) for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # refilled to 3, not more


def test_the_envelope_is_versioned_signed_and_links_the_pipeline_page() -> None:
    alert = rules(failed_after=0).on_event(state("failed"), 1_700_000_000.5)[0]
    body = webhook_body(alert, "http://ui.example:8780")
    document = orjson.loads(body)
    assert {k: document[k] for k in ("version", "event", "status", "pipeline", "project", "severity", "time",
                                     "dedup_key", "link")} == {
        "version": 1, "event": "pipeline.failed", "status": "firing", "pipeline": "orders", "project": "sales",
        "severity": "critical", "time": "2023-11-14T22:13:20.500Z",
        "dedup_key": "conduitd/sales/orders/pipeline.failed", "link": "http://ui.example:8780/pipelines/orders"}
    assert document["summary"] == alert.summary and document["id"] != envelope(alert, None)["id"]
    headers = sign(body, "s3cret-key", 1_700_000_001)
    assert verify(body, "s3cret-key", headers)
    assert not verify(body, "another-key", headers)
    assert not verify(body + b" ", "s3cret-key", headers)
    assert not verify(body, "s3cret-key", {**headers, SIGNATURE_HEADER: "v1=00"})
    assert envelope(alert, None)["link"] is None


def test_slack_gets_blocks_with_the_summary_and_a_button_to_the_page() -> None:
    alert = rules(failed_after=0).on_event(state("failed"), 1.0)[0]
    message = orjson.loads(slack_body(alert, "http://ui:1"))
    assert alert.summary in message["text"]
    types = [block["type"] for block in message["blocks"]]
    assert types[0] == "header" and "actions" in types
    (actions,) = [b for b in message["blocks"] if b["type"] == "actions"]
    assert actions["elements"][0]["url"] == "http://ui:1/pipelines/orders"
    assert "actions" not in [b["type"] for b in orjson.loads(slack_body(alert, None))["blocks"]]


def test_statuses_alone_open_and_end_a_failure_when_the_state_events_were_dropped() -> None:
    engine = rules(failed_after="30s")
    assert kinds(engine.on_statuses([status(state="failed", last_error="boom")], 1.0)) == [
        ("pipeline.failed", "firing")]
    assert engine.on_statuses([status(state="failed")], 2.0) == []
    assert kinds(engine.on_statuses([status(state="running")], 3.0)) == [("pipeline.failed", "resolved")]



def test_alerts_settings_from_a_config_file_keep_urls_and_secrets_out_of_sight(tmp_path: Path) -> None:
    config_path = tmp_path / "c.yaml"
    base = {"sources": [{"name": "s", "type": "file", "path": str(tmp_path / "*.jsonl")}],
            "destinations": [{"name": "d", "type": "sqlite", "path": str(tmp_path / "d.db")}],
            "resources": [{"name": "orders", "source": "s", "destination": "d", "table": "t"}]}
    config_path.write_text(yaml.safe_dump({**base, "alerts": {
        "sinks": [{"type": "webhook", "url": "https://hooks.example/T0k3nPath", "secret": "${HOOK_SECRET}"},
                  {"type": "slack", "url": "https://hooks.slack.com/services/AAA/BBB/ccc"}],
        "dlq_rows_above": 10, "dlq_window": "5m", "stalled_after": None}}))
    config = load_config(config_path, {"HOOK_SECRET": "s3cret-from-env"})
    assert config.alerts is not None
    webhook, slack = config.alerts.sinks
    assert isinstance(webhook, WebhookSink) and isinstance(slack, SlackSink)
    assert webhook.secret is not None and webhook.secret.get_secret_value() == "s3cret-from-env"
    assert config.alerts.dlq_window == 300.0 and config.alerts.stalled_after is None
    shown = f"{config.alerts!r} " + redact("posting to https://hooks.example/T0k3nPath with s3cret-from-env")
    assert "T0k3nPath" not in shown and "s3cret-from-env" not in shown and "BBB/ccc" not in shown
    for wrong, says in (({"sinks": [{"type": "pager", "url": "https://x"}]}, "does not match any of the expected"),
                        ({"sinks": [{"type": "webhook", "url": "ftp://x.example"}]}, "http:// or https://"),
                        ({"sinks": []}, "at least one sink"),
                        ({"sinks": [{"type": "slack", "url": "https://x"}], "stall_after": "1m"}, "stalled_after")):
        config_path.write_text(yaml.safe_dump({**base, "alerts": wrong}))
        with pytest.raises(ConfigError, match=says):
            load_config(config_path, {})
    config_path.write_text(yaml.safe_dump(base))
    assert load_config(config_path, {}).alerts is None


def test_alerts_pipelines_must_name_pipelines_of_the_config(tmp_path: Path) -> None:
    config_path = tmp_path / "c.yaml"
    config_path.write_text(textwrap.dedent(f"""\
        sources: [{{name: s, type: file, path: "{tmp_path}/*.jsonl"}}]
        destinations: [{{name: d, type: sqlite, path: "{tmp_path}/d.db"}}]
        resources: [{{name: orders, source: s, destination: d}}, {{name: refunds, source: s, destination: d}}]
        alerts:
          sinks: [{{type: webhook, url: "https://hooks.example/x"}}]
          pipelines:
            - orders
            - order
            - shipments
        """))
    with pytest.raises(ConfigError) as refused:
        load_config(config_path, {})
    assert str(refused.value).splitlines() == [
        f"{config_path}:8: alerts.pipelines[1]: no pipeline named 'order'; did you mean 'orders'?",
        f"{config_path}:9: alerts.pipelines[2]: no pipeline named 'shipments'; defined: orders, refunds"]


def test_a_failing_dbt_run_is_one_warning_until_dbt_succeeds_again() -> None:
    engine = rules()
    failed = {"kind": "dbt", "pipeline": "orders", "outcome": "failed", "exit_code": 1,
              "failures": [{"node": "model.shop.orders_by_status", "status": "error", "message": "division by zero"}]}
    [alert] = engine.on_event(failed, 10.0)
    assert (alert.kind, alert.status, alert.severity) == ("dbt.failed", "firing", "warning")
    assert "orders_by_status: division by zero" in alert.summary and "stays committed" in alert.summary
    assert engine.on_event({**failed, "outcome": "timeout"}, 20.0) == []  # the same incident
    assert engine.on_event({"kind": "dbt", "pipeline": "orders", "outcome": "skipped"}, 25.0) == []
    [resolved] = engine.on_event({"kind": "dbt", "pipeline": "orders", "outcome": "success"}, 30.0)
    assert (resolved.kind, resolved.status, resolved.dedup_key) == ("dbt.failed", "resolved", alert.dedup_key)
    assert rules(dbt=False).on_event(failed, 10.0) == []
