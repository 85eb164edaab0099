"""scripts/results_pages.py: docs/results pages rendered from benchmark JSON, and kept current."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from scripts import results_pages

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "docs" / "results" / "data" / "2026-12-06-bootstrap_speed.json"


def test_the_committed_pages_are_what_their_json_renders_to() -> None:
    assert results_pages.stale() == []


def test_a_new_json_becomes_a_dated_page_listed_in_the_index(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "2026-01-02-a-study.md").write_text("# 2026-01-02: a study by hand\n")
    source = tmp_path / "bootstrap_speed.json"
    payload = json.loads(SAMPLE.read_text()) | {"written": "2026-03-04T05:06:07"}
    payload["rows"][0]["finding_ci_s"] = 0.5
    source.write_text(json.dumps(payload))
    added = results_pages.add(source, results)
    assert added.name == "2026-03-04-bootstrap_speed.json"
    assert {p.name for p in results_pages.stale(results)} == {
        "2026-03-04-bootstrap-speed.md",
        "README.md",
    }
    for path, text in results_pages.render_all(results).items():
        path.write_text(text)
    page = (results / "2026-03-04-bootstrap-speed.md").read_text()
    assert "| 1,000 | 1,000 | 0.50 |" in page
    index = (results / "README.md").read_text()
    assert index.index("2026-03-04-bootstrap-speed.md") < index.index("2026-01-02-a-study.md")
    assert results_pages.stale(results) == []
    (results / "2026-03-04-bootstrap-speed.md").write_text(page.replace("0.50", "0.40"))
    assert [p.name for p in results_pages.stale(results)] == ["2026-03-04-bootstrap-speed.md"]


def test_json_without_a_renderer_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    shutil.copyfile(SAMPLE, tmp_path / "data" / "2026-12-06-mystery.json")
    with pytest.raises(SystemExit, match="no renderer for 'mystery'"):
        results_pages.render_all(tmp_path)
