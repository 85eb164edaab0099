"""Evaluation: clinical metrics with bootstrap CIs, acceptance gates and the evaluation report.

Pure functions over arrays; nothing here reads models, talks HTTP or touches the database.
Names are imported on first use (PEP 562), so ``from radvigil.evaluation.thresholds import ...``
in training does not pull matplotlib and Jinja2 in with the report.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from radvigil.evaluation.criteria import GateCriteria
    from radvigil.evaluation.evaluator import evaluate
    from radvigil.evaluation.gates import (
        GATES,
        EvaluationInputs,
        criteria_from_dict,
        load_criteria,
        register_gate,
        run_gates,
    )
    from radvigil.evaluation.report import write_report
    from radvigil.evaluation.result import EvaluationOptions, EvaluationResult
    from radvigil.evaluation.thresholds import (
        threshold_for_sensitivity,
        threshold_for_specificity,
        youden_threshold,
    )
    from radvigil.evaluation.verdict import GateRow, Verdict, verdict_table_rows

_HOMES = {
    "GateCriteria": "criteria",
    "evaluate": "evaluator",
    "GATES": "gates",
    "EvaluationInputs": "gates",
    "criteria_from_dict": "gates",
    "load_criteria": "gates",
    "register_gate": "gates",
    "run_gates": "gates",
    "write_report": "report",
    "EvaluationOptions": "result",
    "EvaluationResult": "result",
    "threshold_for_sensitivity": "thresholds",
    "threshold_for_specificity": "thresholds",
    "youden_threshold": "thresholds",
    "GateRow": "verdict",
    "Verdict": "verdict",
    "verdict_table_rows": "verdict",
}

__all__ = [
    "GATES",
    "EvaluationInputs",
    "EvaluationOptions",
    "EvaluationResult",
    "GateCriteria",
    "GateRow",
    "Verdict",
    "criteria_from_dict",
    "evaluate",
    "load_criteria",
    "register_gate",
    "run_gates",
    "threshold_for_sensitivity",
    "threshold_for_specificity",
    "verdict_table_rows",
    "write_report",
    "youden_threshold",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'radvigil.evaluation' has no attribute {name!r}")
    return getattr(import_module(f"radvigil.evaluation.{_HOMES[name]}"), name)
