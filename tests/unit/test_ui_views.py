"""What the registry pages may serve and draw, without a web server."""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone

import pytest

from airflow_mlops.ui.charts import (
    ReferenceLine,
    TimePoint,
    TimeSeries,
    line_chart_svg,
    time_chart_svg,
)
from airflow_mlops.ui.views import REPORT_SUFFIX, ArtifactRefusedError, artifact_path_in_root


def test_local_reports_inside_the_root_resolve_to_their_relative_path(tmp_path):
    root = tmp_path / "root"
    (root / "reports").mkdir(parents=True)
    (root / "reports" / "r.html").write_text("ok")
    assert artifact_path_in_root(str(root), str(root / "reports" / "r.html"), REPORT_SUFFIX) == "reports/r.html"
    assert artifact_path_in_root(str(root), f"file://{root}/reports/r.html", REPORT_SUFFIX) == "reports/r.html"


@pytest.mark.parametrize("uri", [
    "{outside}/secret.html",
    "{root}/../secret.html",
    "{root}/reports/../../secret.html",
    "{root}-sibling/r.html",          # shares the root's prefix but is not inside it
    "{root}/reports/link.html",       # a symlink leading out of the root
    "{root}/registry.db",             # inside, but not a report
    "reports/r.html",                 # relative: ambiguous, refused
    "s3://bucket/root/r.html",
    "",
])
def test_local_report_uris_that_leave_the_root_are_refused(tmp_path, uri):
    root = tmp_path / "root"
    (root / "reports").mkdir(parents=True)
    (tmp_path / "secret.html").write_text("secret")
    os.symlink(tmp_path / "secret.html", root / "reports" / "link.html")
    with pytest.raises(ArtifactRefusedError):
        artifact_path_in_root(str(root), uri.format(root=root, outside=tmp_path), REPORT_SUFFIX)


def test_s3_reports_must_lie_under_the_root_prefix():
    root = "s3://bucket/mlops"
    assert artifact_path_in_root(root, "s3://bucket/mlops/reports/r.html", REPORT_SUFFIX) == "reports/r.html"
    for uri in ("s3://bucket/mlops-other/r.html", "s3://bucket/mlops/../x.html", "s3://other/mlops/r.html",
                "s3://bucket/mlops/a/./r.html", "s3://bucket/mlops//r.html", "/etc/r.html"):
        with pytest.raises(ArtifactRefusedError):
            artifact_path_in_root(root, uri, REPORT_SUFFIX)


def test_chart_plots_numbers_and_escapes_labels():
    svg = line_chart_svg([("v1", 0.5), ("<v2>", 0.75), ("v3", None), ("v4", True)], "auc & more")
    assert svg.count("<circle") == 2  # None and booleans are not plotted
    assert "&lt;v2&gt;" in svg and "auc &amp; more" in svg and "<v2>" not in svg
    assert "no data yet" in line_chart_svg([("v1", None)], "auc")


def test_time_chart_places_points_by_time_and_draws_reference_lines():
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    series = TimeSeries("realized", "realized", [
        TimePoint(start, 0.9), TimePoint(start + timedelta(days=1), None), TimePoint(start + timedelta(days=4), 0.7, False),
    ])
    svg = time_chart_svg("auc <over> time", [series], [ReferenceLine("threshold min", 0.8, "threshold")])
    assert svg.count("<circle") == 2 and svg.count('class="breach"') == 1  # None is not plotted
    assert "auc &lt;over&gt; time" in svg and "<title>threshold min: 0.8</title>" in svg
    xs = [float(x) for x in re.findall(r'<circle class="[^"]+" cx="([0-9.]+)"', svg)]
    assert xs[0] < xs[1]  # the first day left, the fourth right
    assert "2025-01-05 00:00" in svg  # the last tick is the last point's time
    assert "no data yet" in time_chart_svg("empty", [TimeSeries("realized", "realized", [TimePoint(start, None)])])
