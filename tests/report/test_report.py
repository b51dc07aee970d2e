"""The HTML report of a default run, opened in a real (headless) browser."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from casa_eval.report import build_report
from tests.clitools import casa_eval
from tests.report.browser import chromium

XSS = "<script>alert(1)</script>"


def _with_hostile_prediction(run: Path, tmp_path: Path) -> Path:
    """A copy of the run whose first sample predicts a script tag (as a model could)."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    samples = sorted((copy / "samples").glob("*.jsonl"))[0]
    lines = samples.read_text().splitlines()
    first = json.loads(lines[0])
    first["prediction"] = XSS
    samples.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    return copy


def test_report_renders_in_chromium_without_errors(default_run: Path, tmp_path: Path) -> None:
    run = _with_hostile_prediction(default_run, tmp_path)
    report = build_report([run], tmp_path / "report.html")
    html = report.read_text()
    assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    from plotly.offline import get_plotlyjs

    ours = html.replace(get_plotlyjs(), "")  # plotly.js itself carries (unused) map-tile URLs
    assert not re.search(r"(src|href)=\"https?://", ours)  # nothing to fetch from another host

    with chromium(tmp_path / "profile") as driver:
        driver.get(report.as_uri())
        expected = driver.execute_script("return document.querySelectorAll('[data-figure]').length")
        deadline = time.monotonic() + 300  # a bound on waiting, not on speed
        rendered = 0
        while time.monotonic() < deadline:
            rendered = driver.execute_script(  # figures whose SVG holds drawn traces
                "return Array.from(document.querySelectorAll('[data-figure].js-plotly-plot'))"
                ".filter(d => d.querySelector('.main-svg .trace')).length")
            if rendered >= expected:
                break
            time.sleep(0.25)
        assert expected >= 7 and rendered >= expected  # accuracy, decision view, five efficiency panels
        traces = driver.execute_script(
            "return Array.from(document.querySelectorAll('[data-figure]')).map(d => (d.data || []).length)")
        assert all(n > 0 for n in traces)
        # the hostile prediction is shown as text, not run
        cell = driver.execute_script(
            "return Array.from(document.querySelectorAll('td')).filter(td => td.textContent === arguments[0]).length",
            XSS)
        assert cell == 1
        # filters work
        total = driver.execute_script("return document.querySelectorAll('tr.sample').length")
        driver.find_element("id", "f-failed").click()
        shown = driver.execute_script(
            "return Array.from(document.querySelectorAll('tr.sample')).filter(r => r.style.display !== 'none').length")
        assert 0 < shown <= total
        driver.find_element("id", "f-failed").click()
        thumbnails = driver.execute_script(
            "return Array.from(document.querySelectorAll('img[data-thumb]')).filter(i => i.naturalWidth > 0).length")
        assert thumbnails > 0
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        driver.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_run_writes_the_report_and_several_runs_share_one(default_run: Path, tmp_path: Path,
                                                          data_cache: Path) -> None:
    assert (default_run / "report.html").is_file()  # written by `casa-eval run`
    second = tmp_path / "second"
    import shutil

    shutil.copytree(default_run, second)
    result = casa_eval("report", str(default_run), str(second), "--out", str(tmp_path / "both.html"),
                       cache=data_cache)
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "both.html").read_text()
    assert html.count("plotly.js v") <= 2  # plotly.js embedded once (its banner)
    assert f"<th>{default_run.name}</th>" in html and "<th>second</th>" in html
    missing = casa_eval("report", str(tmp_path / "nothing"), cache=data_cache)
    assert missing.returncode == 2 and "no results document" in missing.stderr
