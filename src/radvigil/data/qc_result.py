"""What image QC returns: per-item flags, duplicate groups and a summary, serialisable to JSON."""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, Field

Severity = Literal["fail", "warn"]


class QCFlag(BaseModel):
    """One check that one item did not pass; ``fail`` items are dropped by ``--exclude``."""

    path: str
    check: str
    severity: Severity
    message: str


class DuplicateGroup(BaseModel):
    """Items with the same bytes (``exact``) or nearly the same picture (``near``)."""

    kind: Literal["exact", "near"]
    paths: list[str]
    splits: list[str]
    labels: list[str]

    @property
    def crosses_splits(self) -> bool:
        return len(set(self.splits)) > 1


class CheckSummary(BaseModel):
    """How many items one check flagged, at which severity and against which threshold."""

    check: str
    severity: Severity
    threshold: str
    flagged: int


class QCReport(BaseModel):
    """The outcome of :func:`radvigil.data.quality.run_qc` on one dataset version."""

    version_id: str
    items: int
    config: dict[str, Any]
    checks: list[CheckSummary]
    groups: list[DuplicateGroup] = Field(default_factory=list)
    flags: list[QCFlag] = Field(default_factory=list)

    def failing_paths(self) -> list[str]:
        """Paths with at least one ``fail`` flag, sorted."""
        return sorted({f.path for f in self.flags if f.severity == "fail"})

    def without(self, paths: list[str]) -> QCReport:
        """The same report with the flags of ``paths`` dropped (e.g. the items excluded)."""
        drop = set(paths)
        return self.model_copy(update={"flags": [f for f in self.flags if f.path not in drop]})

    def warned_paths(self) -> list[str]:
        """Paths with warnings only, sorted."""
        failing = set(self.failing_paths())
        return sorted({f.path for f in self.flags if f.path not in failing})

    def duplicate_counts(self, kind: Literal["exact", "near"]) -> tuple[int, int]:
        """(groups, groups that cross splits) for one kind of duplicate."""
        groups = [g for g in self.groups if g.kind == kind]
        return len(groups), sum(g.crosses_splits for g in groups)

    def flags_frame(self) -> pd.DataFrame:
        """Flags as a table (path, check, severity, message), fails first."""
        frame = pd.DataFrame(
            [f.model_dump() for f in self.flags], columns=["path", "check", "severity", "message"]
        )
        return frame.sort_values(["severity", "check", "path"], kind="stable").reset_index(
            drop=True
        )

    def excluded_by_check(self) -> dict[str, list[str]]:
        """For each failing path, the checks it failed (what ``--exclude`` records in meta)."""
        out: dict[str, list[str]] = {}
        for flag in self.flags:
            if flag.severity == "fail":
                out.setdefault(flag.path, []).append(flag.check)
        return {path: sorted(set(checks)) for path, checks in sorted(out.items())}
