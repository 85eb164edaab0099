"""The evaluation report: self-contained valid HTML with the expected sections, and a JSON twin."""

from __future__ import annotations

import json
import logging
from html.parser import HTMLParser
from pathlib import Path

import pytest

from radvigil.evaluation import (
    EvaluationInputs,
    EvaluationOptions,
    EvaluationResult,
    criteria_from_dict,
    evaluate,
    run_gates,
    threshold_for_sensitivity,
    write_report,
)
from tests.unit.evaluation_data import Predictions, chest_three_class

SECTIONS = (
    "disclaimer",
    "summary",
    "caveats",
    "gates",
    "findings",
    "operating-points",
    "curves",
    "calibration",
    "classes",
    "subgroups",
    "errors",
    "methods",
)
VOID = {"meta", "img", "br", "hr", "link", "input"}


class StrictParser(HTMLParser):
    """Collects section ids and image sources and checks that every tag is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.sections: list[str] = []
        self.images: list[str] = []
        self.problems: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "section":
            self.sections.append(values.get("id") or "")
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(path: Path) -> StrictParser:
    parser = StrictParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


@pytest.fixture(scope="module")
def three(shared_data: Path) -> Predictions:
    return chest_three_class(shared_data)


@pytest.fixture(scope="module")
def result(three: Predictions) -> EvaluationResult:
    thresholds = {
        f: threshold_for_sensitivity(three.y_val == f, three.p_val[:, three.classes.index(f)], 0.9)
        for f in three.findings
    }
    return evaluate(
        three.y_test,
        three.p_test,
        three.classes,
        three.findings,
        thresholds,
        three.frame,
        paths=three.paths,
        validation=(three.y_val, three.p_val),
        context={"model": "logreg-28px", "dataset": "kermany+sakha", "split": "test"},
    )


def test_report_is_valid_self_contained_html_with_every_section(
    tmp_path: Path, three: Predictions, result: EvaluationResult
) -> None:
    criteria = criteria_from_dict(
        {"n_resamples": 200, "gates": [{"kind": "min_sensitivity", "default": 0.98}]}
    )
    candidate = EvaluationInputs(three.y_test, three.p_test, result.thresholds, three.frame)
    verdict = run_gates(criteria, candidate, classes=three.classes, findings=three.findings)
    caveat = "Labels come from the source folders, not from a radiologist's read."
    html_path, json_path = write_report(result, tmp_path / "out", verdict, [caveat])

    parser = _parse(html_path)
    assert parser.problems == [] and parser.stack == []
    assert parser.sections == list(SECTIONS)
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert len(parser.images) >= 5 + len(result.worst_errors)
    text = " ".join(" ".join(parser.text).split())
    pneumonia = result.finding("pneumonia")
    expected = (
        f"sensitivity {pneumonia.sensitivity.value:.2f} (95% CI {pneumonia.sensitivity.low:.2f}-"
        f"{pneumonia.sensitivity.high:.2f})"
    )
    assert expected in text and f"at threshold {pneumonia.threshold:.2f}" in text
    assert "Decision support only" in text
    assert caveat in text
    assert "confounded in 'source_dataset'" in text
    assert "Release gates: FAIL" in text
    twin = json.loads(json_path.read_text())
    assert twin["verdict"]["passed"] is False
    assert twin["verdict"]["rows"][0]["value"] == pytest.approx(pneumonia.sensitivity.value)


def test_json_twin_holds_the_numbers_without_images(
    tmp_path: Path, result: EvaluationResult
) -> None:
    _, json_path = write_report(result, tmp_path, caveats=["small test set"])
    payload = json.loads(json_path.read_text())
    assert payload["verdict"] is None
    assert "small test set" in payload["caveats"]
    again = EvaluationResult.model_validate(payload["evaluation"])
    assert again == result
    assert "base64" not in json_path.read_text()


def test_report_without_verdict_or_images_still_renders(
    tmp_path: Path, three: Predictions, result: EvaluationResult, caplog: pytest.LogCaptureFixture
) -> None:
    missing = [
        case.model_copy(update={"path": str(tmp_path / "gone.png")}) for case in result.worst_errors
    ]
    broken = result.model_copy(update={"worst_errors": missing})
    with caplog.at_level(logging.WARNING, logger="radvigil.evaluation.figures"):
        html_path, _ = write_report(broken, tmp_path)
    parser = _parse(html_path)
    assert parser.problems == []
    assert "gates" not in parser.sections
    assert "no image" in " ".join(parser.text)
    assert "gone.png" in caplog.text


def test_report_renders_when_a_finding_has_no_cases(tmp_path: Path, three: Predictions) -> None:
    kermany = (three.frame["source_dataset"] == "kermany_guangzhou_pediatric_cxr").to_numpy()
    result = evaluate(
        three.y_test[kermany],
        three.p_test[kermany],
        three.classes,
        three.findings,
        {"pneumonia": 0.4, "tuberculosis": 0.4},
        options=EvaluationOptions(n_resamples=100),
    )
    assert result.finding("tuberculosis").sensitivity.value is None
    html_path, json_path = write_report(result, tmp_path)
    assert _parse(html_path).problems == []
    assert json.loads(json_path.read_text())["evaluation"]["auc"]["tuberculosis"]["value"] is None
