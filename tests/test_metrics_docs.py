"""The metrics' documentation and dashboard name only metrics the code defines."""

from __future__ import annotations

import json
import re
from pathlib import Path

from singleton.metrics import METRICS, markdown_table

REPO = Path(__file__).resolve().parent.parent
SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "counter": ("",), "gauge": ("",)}
EXPOSED = {m.name + suffix for m in METRICS for suffix in SUFFIXES[m.type]}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
             "bool", "offset"}


def metric_names(promql: str) -> set[str]:
    """Return the metric names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", promql)  # label values
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)  # matchers, ranges
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    tokens = re.finditer(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", text)
    return {t[1] for t in tokens if t[1] not in _KEYWORDS}


def test_metric_names_finds_the_selected_metrics_only():
    expr = 'sum by (task, le) (rate(x_bucket{a="b"}[5m])) / on() y > 0 and z{s=~"a|b"}'
    assert metric_names(expr) == {"x_bucket", "y", "z"}


def test_the_readme_table_is_the_one_the_code_generates():
    assert markdown_table() in (REPO / "README.md").read_text()


def test_the_readme_promql_examples_use_only_defined_metrics():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```promql\n(.*?)```", readme, re.S)
    assert blocks
    for block in blocks:
        expressions = re.split(r"\n\s*\n", "\n".join(
            line for line in block.splitlines() if not line.lstrip().startswith("#")))
        for expr in filter(str.strip, expressions):
            assert metric_names(expr) and metric_names(expr) <= EXPOSED, expr


def test_the_grafana_dashboard_uses_only_defined_metrics():
    dashboard = json.loads((REPO / "ops" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs
    for expr in exprs:
        names = metric_names(expr)
        assert names and names <= EXPOSED, expr
    variables = [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    assert all(re.search(r"label_values\((\w+),", v)[1] in EXPOSED for v in variables)


def test_the_dashboard_shows_every_metric():
    dashboard = (REPO / "ops" / "grafana-dashboard.json").read_text()
    assert all(m.name in dashboard for m in METRICS)
