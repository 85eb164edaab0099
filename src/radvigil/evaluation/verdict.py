"""The outcome of running acceptance gates: one evidence row per check and an overall verdict.

A row is ``skipped`` when it cannot be judged for a reason that is not the model's fault (no
champion yet, no problem-case set, a subgroup too small); skipped rows do not fail the verdict
but stay in the table so a reviewer sees what was not checked. A row of an advisory gate
(``gating: false``) is judged and kept with the evidence like any other, but never decides the
verdict: a check no shipped model passes yet can be recorded for every version before it gates.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Status = Literal["pass", "fail", "skipped"]
Comparator = Literal[">=", "<=", ">"]


class GateRow(BaseModel):
    """One check: what was measured, on what, against which bound, and the result."""

    gate: str = Field(description="Registered gate kind.")
    name: str = Field(description="The gate's label from the criteria file.")
    metric: str
    finding: str | None = None
    subgroup: str | None = Field(default=None, description="'column=value' for subgroup gates.")
    value: float | None = Field(default=None, description="Point estimate (or difference).")
    ci_low: float | None = None
    ci_high: float | None = None
    judged: Literal["point", "ci_lower", "ci_upper"] = "point"
    comparator: Comparator = ">="
    threshold: float | None = None
    status: Status
    message: str
    gating: bool = Field(
        default=True, description="False: an advisory row, judged and shown, not deciding."
    )

    @property
    def checked(self) -> float | None:
        """The number compared with the bound: the point estimate or the judged CI end."""
        return {"point": self.value, "ci_lower": self.ci_low, "ci_upper": self.ci_high}[self.judged]

    @property
    def margin(self) -> float | None:
        """How far the judged number lies from its bound, positive on the passing side
        (0.07 = seven points of room; negative = failed by that much); None when unjudged."""
        if self.checked is None or self.threshold is None:
            return None
        if self.comparator == "<=":
            return self.threshold - self.checked
        return self.checked - self.threshold


class Verdict(BaseModel):
    """All gate rows; ``passed`` is True when no gating row failed."""

    passed: bool
    rows: list[GateRow]
    ci_level: float
    n_resamples: int
    seed: int

    @property
    def failures(self) -> list[GateRow]:
        return [row for row in self.rows if row.status == "fail" and row.gating]

    @property
    def advisory(self) -> list[GateRow]:
        """The judged rows of advisory gates (``gating: false``)."""
        return [row for row in self.rows if not row.gating and row.status != "skipped"]

    @property
    def advisory_passed(self) -> bool | None:
        """Whether every advisory row passed; None when the criteria had no advisory gate."""
        rows = self.advisory
        return all(r.status == "pass" for r in rows) if rows else None

    def tightest(self, rows: list[GateRow] | None = None) -> GateRow | None:
        """The judged row nearest its bound (the one a new hold-out would flip first)."""
        judged = [r for r in (self.rows if rows is None else rows) if r.margin is not None]
        judged = [r for r in judged if r.status != "skipped" and r.gating]
        return min(judged, key=lambda r: r.margin or 0.0, default=None)

    def summary(self) -> str:
        """One line such as ``PASS: 9 checks passed, 2 skipped``."""
        gating = [r for r in self.rows if r.gating]
        counts = {s: sum(r.status == s for r in gating) for s in ("pass", "fail", "skipped")}
        unjudgeable = sum("not judgeable" in r.message for r in gating if r.status == "skipped")
        skipped = f"{counts['skipped']} skipped"
        skipped += f" ({unjudgeable} not judgeable on this hold-out)" if unjudgeable else ""
        if self.passed:
            return f"PASS: {counts['pass']} checks passed, {skipped}{self._advisory_summary()}"
        names = ", ".join(sorted({_where(r) for r in self.failures}))
        return (
            f"FAIL: {counts['fail']} of {len(gating)} checks failed ({names})"
            + self._advisory_summary()
        )

    def _advisory_summary(self) -> str:
        rows = self.advisory
        if not rows:
            return ""
        failed = [r for r in rows if r.status == "fail"]
        where = sorted({(r.subgroup or _where(r)).split(" (")[0] for r in failed})
        names = f" ({', '.join(where)})" if failed else ""
        return f"; advisory, not gating: {len(failed)} of {len(rows)} checks failed{names}"

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def verdict_table_rows(verdict: Verdict, digits: int = 3) -> list[dict[str, str]]:
    """The verdict as rows of display strings, the same columns for the CLI and the report."""
    level = f"{round(verdict.ci_level * 100):g}% CI"
    return [
        {
            "result": row.status.upper() + ("" if row.gating else " (advisory)"),
            "gate": row.name,
            "metric": row.metric,
            "finding": row.finding or "",
            "subgroup": row.subgroup or "",
            "value": _number(row.value, digits),
            level: _interval(row.ci_low, row.ci_high, digits),
            "rule": (
                f"{row.judged.replace('_', ' ')} {row.comparator} {_number(row.threshold, digits)}"
                if row.threshold is not None
                else ""
            ),
            "room": _number(row.margin, digits) if row.status != "skipped" else "",
            "message": row.message,
        }
        for row in verdict.rows
    ]


def _where(row: GateRow) -> str:
    return "/".join(part for part in (row.name, row.finding, row.subgroup) if part)


def _number(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _interval(low: float | None, high: float | None, digits: int) -> str:
    if low is None or high is None:
        return "n/a"
    return f"{low:.{digits}f} to {high:.{digits}f}"
