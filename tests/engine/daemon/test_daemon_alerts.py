"""deploy/prometheus/alerts.yml: valid rule groups over metrics the daemon really exposes.

(promtool is not available here: the file is parsed, its shape checked, and every metric
an expression names is looked up in a real exposition.)
"""

from __future__ import annotations

import pathlib
import re

import yaml
from prometheus_client.parser import text_string_to_metric_families

from engine.daemon.config import DaemonSection
from engine.daemon.exposition import ALERT_NAMES, new_registry, render_metrics
from engine.daemon.metrics import DaemonSnapshot, StreamMetrics

ROOT = pathlib.Path(__file__).resolve().parents[3]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
NAME = re.compile(r"\b((?:steno|process)_[a-z_]+)\b")


def exposed_names() -> set[str]:
    m = StreamMetrics("a", source="url", model="paraformer-realtime-v2")
    snap = DaemonSnapshot(uptime_s=1.0, draining=False, streams=(m.snapshot(1.0),))
    names = set()
    for family in text_string_to_metric_families(render_metrics(snap)):
        names |= {sample.name for sample in family.samples}
    return names


def rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(ALERTS.read_text())
    assert set(doc) == {"groups"}
    out: list[dict[str, object]] = []
    for group in doc["groups"]:
        assert set(group) == {"name", "rules"} and group["rules"]
        out += group["rules"]
    return out


class TestAlertRules:
    def test_the_rules_are_well_formed(self) -> None:
        """Each rule: a name, a balanced expression, a severity and a summary; names unique."""
        found = rules()
        assert [r["alert"] for r in found] == ["StenoStreamLosingAudio", "StenoStreamReconnecting"]
        for rule in found:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
            expr = str(rule["expr"])
            for left, right in ("()", "[]", "{}"):
                assert expr.count(left) == expr.count(right), expr
            assert rule["labels"]["severity"] in ("warning", "critical")  # type: ignore[index]
            assert "{{ $labels.stream }}" in rule["annotations"]["summary"]  # type: ignore[index]

    def test_every_metric_they_name_is_exposed(self) -> None:
        exposed = exposed_names()
        for rule in rules():
            for name in NAME.findall(str(rule["expr"])):
                assert name in exposed, name

    def test_the_readme_shows_the_same_rules(self) -> None:
        readme = (ROOT / "README.md").read_text()
        for rule in rules():
            assert f"expr: {rule['expr']}" in readme

    def test_the_names_users_alert_on_are_exposed_by_a_daemon_registry(self) -> None:
        """ALERT_NAMES (README, dashboards) are all in one daemon's registry, process_* included."""
        m = StreamMetrics("a", source="url", model="paraformer-realtime-v2")
        m.final_lag.observe(1.0)
        registry = new_registry(
            lambda: DaemonSnapshot(uptime_s=1.0, draining=False, streams=(m.snapshot(1.0),))
        )
        names = {s.name for metric in registry.collect() for s in metric.samples}
        assert set(ALERT_NAMES) <= names

    def test_the_example_prometheus_config_loads_the_rules_and_scrapes_the_default_port(
        self,
    ) -> None:
        doc = yaml.safe_load((ALERTS.parent / "prometheus.yml").read_text())
        assert doc["rule_files"] == [ALERTS.name]
        (job,) = doc["scrape_configs"]
        assert job["metrics_path"] == "/metrics"
        assert job["static_configs"][0]["targets"] == [DaemonSection().listen]
