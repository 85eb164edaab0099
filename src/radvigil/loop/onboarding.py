"""A site's onboarding on a label budget: the budgeted review queue and what the labels show.

The service route, the CLI and the dashboard all call :func:`site_onboarding`: it reads the
site's unlabelled cases and its labels, leaves the budget the site has not spent, ranks the pool
with the configured policy (:mod:`radvigil.monitoring.label_selection`) and estimates the site's
sensitivity and specificity from the audit sample only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from radvigil.config import Settings
from radvigil.monitoring.label_selection import (
    AUDIT,
    Budget,
    Candidates,
    Choice,
    LabelledCase,
    Rate,
    audit_performance,
    select,
    spent_by_policy,
)
from radvigil.monitoring.onboarding_curve import (
    CurvePoint,
    bench_curve,
    measured_performance,
    site_curve,
)
from radvigil.store import PredictionRecord, ReviewQueue

# (model name, version, site) -> the operating threshold per finding for that site.
ThresholdsOf = Callable[[str, str, str], Mapping[str, float]]  # name, version, site
# Reasons the service adds besides the drifter checks (see monitoring.review_routing).
NOT_DRIFT = ("low confidence", "audit sample")


@dataclass(frozen=True)
class QueueEntry:
    """A case offered for labelling and the choice that put it there."""

    record: PredictionRecord
    choice: Choice


@dataclass(frozen=True)
class SiteOnboarding:
    """A site's label budget, what it spent, the queue it is offered, its audit estimate (unbiased),
    the rates on every label (biased toward hard cases) and its learning curve (``curve_source``:
    ``site`` from its own labels, ``benchmark`` from the bench JSON, None without either)."""

    site: str
    budget: int
    period: str
    policy: str
    audit_share: float
    spent: int
    audit_spent: int
    entries: list[QueueEntry]
    sensitivity: Rate
    specificity: Rate
    measured_sensitivity: Rate
    measured_specificity: Rate
    curve: list[CurvePoint]
    curve_source: str | None
    by_policy: Mapping[str, int] = field(default_factory=dict)

    @property
    def remaining(self) -> int:
        return max(0, self.budget - self.spent)

    def policy_of(self, prediction_id: str) -> str | None:
        """The policy that offered this case (``audit`` for the audit sample), None if none did."""
        return next((e.choice.policy for e in self.entries if e.record.id == prediction_id), None)


def margin(record: PredictionRecord, thresholds: Mapping[str, float]) -> float:
    """Distance of the case's probability from its version's operating threshold (the smallest
    over the findings): how near the decision is to flipping."""
    return min(abs(record.probabilities.get(f, 0.0) - t) for f, t in thresholds.items())


def is_drifter(record: PredictionRecord) -> bool:
    """Whether the service flagged the case as a drifter (OOD, quality, guards)."""
    return any(not w.startswith(NOT_DRIFT) for w in record.warnings)


def _embeddings(records: list[PredictionRecord]) -> np.ndarray | None:
    rows = [r.embedding for r in records if r.embedding is not None]
    if not rows or len(rows) != len(records) or len({len(r) for r in rows}) != 1:
        return None
    return np.asarray(rows, dtype=float)


def site_onboarding(
    queue: ReviewQueue,
    settings: Settings,
    site: str,
    thresholds_of: ThresholdsOf,
    *,
    now: datetime | None = None,
) -> SiteOnboarding | None:
    """The site's budgeted queue and onboarding figures; None when the site has no budget."""
    total = settings.label_budgets.get(site)
    if total is None:
        return None
    cache: dict[tuple[str, str], Mapping[str, float]] = {}

    def thresholds(record: PredictionRecord) -> Mapping[str, float]:
        key = (record.model_name, record.model_version)
        if key not in cache:  # the site's own thresholds where the version was fitted for it
            cache[key] = thresholds_of(*key, site)
        return cache[key]

    since = None
    if settings.label_budget_period == "week":
        since = (now or datetime.now(UTC)) - timedelta(days=7)
    labelled = queue.site_labels(site)
    in_period = queue.site_labels(site, since=since) if since is not None else labelled
    policies = [policy for _, _, policy in in_period]
    spent, audit_spent = len(policies), policies.count(AUDIT)
    budget = Budget.split(total, settings.label_audit_share, spent=spent, audit_spent=audit_spent)
    pool = queue.unlabelled(site)
    pool_embeddings = _embeddings(pool)
    labelled_embeddings = _embeddings([r for r, _, _ in labelled])
    if (
        pool_embeddings is not None
        and labelled_embeddings is not None
        and labelled_embeddings.shape[1] != pool_embeddings.shape[1]
    ):
        labelled_embeddings = None
    candidates = Candidates(
        ids=[r.id for r in pool],
        margin=np.asarray([margin(r, thresholds(r)) for r in pool], dtype=float),
        embeddings=pool_embeddings,
        drifter=np.asarray([is_drifter(r) for r in pool], dtype=bool),
        labelled_embeddings=labelled_embeddings,
        keys=[r.study_hash or r.id for r in pool],
    )
    choices = select(candidates, budget, policy=settings.label_policy, seed=settings.label_seed)
    cases = [
        LabelledCase(positive=label in thresholds(r), flagged=bool(r.findings), policy=policy)
        for r, label, policy in labelled
    ]
    sensitivity, specificity = audit_performance(cases)
    measured_sensitivity, measured_specificity = measured_performance(cases)
    curve, curve_source = learning_curve(cases, settings)
    return SiteOnboarding(
        site=site,
        budget=total,
        period=settings.label_budget_period,
        policy=settings.label_policy,
        audit_share=settings.label_audit_share,
        spent=spent,
        audit_spent=audit_spent,
        entries=[QueueEntry(pool[c.index], c) for c in choices],
        sensitivity=sensitivity,
        specificity=specificity,
        by_policy=spent_by_policy(policies),
        measured_sensitivity=measured_sensitivity,
        measured_specificity=measured_specificity,
        curve=curve,
        curve_source=curve_source,
    )


def learning_curve(
    cases: list[LabelledCase], settings: Settings
) -> tuple[list[CurvePoint], str | None]:
    """The site's own curve (audit estimate as labels were given) once it has labels, else the
    benchmark's curve for the configured policy when ``settings.onboarding_curve`` names one."""
    if cases:
        return site_curve(cases), "site"
    if settings.onboarding_curve is None:
        return [], None
    curve = bench_curve(settings.onboarding_curve, settings.label_policy)
    return curve, ("benchmark" if curve else None)


def registry_thresholds(registry) -> ThresholdsOf:
    """Operating thresholds read from each version's model card in the registry (a site's own
    where the version has them)."""

    def lookup(name: str, version: str, site: str) -> Mapping[str, float]:
        return registry.load(f"{name}/{version}").card.operating_thresholds(site)

    return lookup


def offer(queue: ReviewQueue, onboarding: SiteOnboarding, shown: list[QueueEntry]) -> None:
    """Record that the budgeted queue offered ``shown`` to a clinician (the route's page, the
    CLI's list, the dashboard's page), so their labels keep the policy that chose them."""
    queue.record_offers(
        onboarding.site, [(e.record.id, e.choice.policy, e.choice.reason) for e in shown]
    )


def label_policy(
    queue: ReviewQueue, settings: Settings, thresholds_of: ThresholdsOf
) -> Callable[[PredictionRecord], str | None]:
    """For :func:`radvigil.loop.actions.label_case`: the policy that offered a case in its
    site's budgeted queue (the recorded offer; else the queue as it stands now), None for
    sites without a budget and cases no queue offered."""

    def policy_of(record: PredictionRecord) -> str | None:
        if record.site is None:
            return None
        offered = queue.offered_policy(record.id)
        if offered is not None:
            return offered
        onboarding = site_onboarding(queue, settings, record.site, thresholds_of)
        return None if onboarding is None else onboarding.policy_of(record.id)

    return policy_of
