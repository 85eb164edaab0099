"""Which unlabelled studies a site's clinicians label next, on a label budget.

A site has few labels to give. Spent on cases the model already gets right, they repair nothing;
spent all on the most uncertain cases, they come from one cluster of look-alike films. The
policies here rank candidates (arrays in, ranked choices out; no database, no HTTP):

* ``random``: a seeded shuffle, the baseline every other policy must beat;
* ``uncertainty``: closest first to the version's *operating threshold* (the cut that decides a
  finding, not 0.5), where a label can move the decision;
* ``combined``: drifters first, then k-center greedy over the reduced embeddings among the more
  uncertain half of the cases, so the labels spread over the site's clusters.

Apart from the policy, a fixed share of the budget is an *audit sample* drawn by a seeded hash
of the case id (stable while other cases are labelled). Its labels are a uniform sample of the
site and are reported on their own: performance measured on them is unbiased, which it never is
on cases a policy chose for being hard.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from radvigil.monitoring.stattests import wilson_interval

AUDIT = "audit"
# The combined policy lets k-center greedy choose among the more uncertain half of the pool
# (at least this many candidates per label left to spend).
UNCERTAIN_SHARE = 0.5
UNCERTAIN_POOL_FACTOR = 3


@dataclass(frozen=True)
class Candidates:
    """Unlabelled cases a policy may choose from, aligned by position.

    Attributes:
        ids: a stable id per case (the prediction's request id).
        margin: distance of the calibrated probability from the operating threshold (the
            smallest over the version's findings); small = the decision could go either way.
        embeddings: reduced embeddings, one row per case, or None when none are stored.
        drifter: whether the case was flagged as a drifter (OOD, quality, guards).
        labelled_embeddings: embeddings of the site's already-labelled cases; k-center greedy
            starts from them so new labels go where none are yet.
        keys: a content key per case (the keyed study hash), which the audit sample and the
            random policy are drawn by, so the same studies are drawn on every run and replica
            whatever request ids they were given; the ids when None.
    """

    ids: Sequence[str]
    margin: np.ndarray
    embeddings: np.ndarray | None = None
    drifter: np.ndarray | None = None
    labelled_embeddings: np.ndarray | None = None
    keys: Sequence[str] | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.keys is not None and len(self.keys) != n:
            raise ValueError(f"keys must have {n} entries, got {len(self.keys)}")
        if self.margin.shape != (n,):
            raise ValueError(f"margin must have shape ({n},), got {self.margin.shape}")
        if self.embeddings is not None and self.embeddings.shape[0] != n:
            raise ValueError(f"embeddings must have {n} rows, got {self.embeddings.shape[0]}")
        if self.drifter is not None and self.drifter.shape != (n,):
            raise ValueError(f"drifter must have shape ({n},), got {self.drifter.shape}")

    @property
    def draw_keys(self) -> Sequence[str]:
        """What the seeded draws rank by: the content keys, else the ids."""
        return self.ids if self.keys is None else self.keys

    @property
    def drifters(self) -> np.ndarray:
        return np.zeros(len(self.ids), bool) if self.drifter is None else self.drifter.astype(bool)


@dataclass(frozen=True)
class Choice:
    """One case chosen for labelling: its position, id, the policy that chose it and why."""

    index: int
    id: str
    policy: str
    reason: str

    @property
    def audit(self) -> bool:
        return self.policy == AUDIT


@dataclass(frozen=True)
class Budget:
    """What is left to spend: policy labels and audit labels, counted apart."""

    policy: int
    audit: int = 0

    def __post_init__(self) -> None:
        if self.policy < 0 or self.audit < 0:
            raise ValueError(f"a budget cannot be negative, got {self}")

    @classmethod
    def split(cls, total: int, audit_share: float, *, spent: int = 0, audit_spent: int = 0):
        """The remaining budget when ``audit_share`` of ``total`` is kept for the audit sample.

        ``spent`` counts every label given so far, ``audit_spent`` those of the audit sample.
        """
        if not 0.0 <= audit_share <= 1.0:
            raise ValueError(f"audit_share must be in [0, 1], got {audit_share}")
        audit_total = round(total * audit_share)
        policy_spent = spent - audit_spent
        return cls(
            policy=max(0, total - audit_total - policy_spent),
            audit=max(0, audit_total - audit_spent),
        )


def seeded_rank(ids: Sequence[str], seed: int, salt: str) -> np.ndarray:
    """A number in [0, 1) per id from a seeded hash: a shuffle that does not move when other
    cases leave the pool (so the queue stays put while clinicians label)."""
    values = [
        int.from_bytes(hashlib.sha256(f"{salt}:{seed}:{i}".encode()).digest()[:8], "big") / 2**64
        for i in ids
    ]
    return np.asarray(values, dtype=float)


def k_center_greedy(
    points: np.ndarray, k: int, centers: np.ndarray | None = None
) -> tuple[list[int], list[float]]:
    """Indices of ``k`` points chosen one at a time, each the farthest from those chosen so far
    (and from ``centers``); with the distance each was at when chosen.

    Without centers the first pick is the point farthest from the mean.
    """
    k = min(k, len(points))
    if k <= 0:
        return [], []
    if centers is not None and len(centers):
        nearest = np.min(np.linalg.norm(points[:, None, :] - centers[None, :, :], axis=2), axis=1)
    else:
        nearest = np.linalg.norm(points - points.mean(axis=0), axis=1)
    chosen: list[int] = []
    distances: list[float] = []
    for _ in range(k):
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        distances.append(float(nearest[pick]))
        nearest = np.minimum(nearest, np.linalg.norm(points - points[pick], axis=1))
        nearest[chosen] = -np.inf
    return chosen, distances


def _random(c: Candidates, k: int, seed: int, pool: np.ndarray) -> list[tuple[int, str]]:
    keys = c.draw_keys
    order = pool[np.argsort(seeded_rank([keys[i] for i in pool], seed, "random"), kind="stable")]
    return [(int(i), "random: a seeded shuffle of the unlabelled cases") for i in order[:k]]


def _uncertainty(c: Candidates, k: int, seed: int, pool: np.ndarray) -> list[tuple[int, str]]:
    order = pool[np.argsort(c.margin[pool], kind="stable")]
    return [(int(i), _near_threshold(c.margin[i])) for i in order[:k]]


def _combined(c: Candidates, k: int, seed: int, pool: np.ndarray) -> list[tuple[int, str]]:
    drifting = pool[c.drifters[pool]]
    drifting = drifting[np.argsort(c.margin[drifting], kind="stable")][:k]
    picks = [(int(i), f"drifter, {_near_threshold(c.margin[i])}") for i in drifting]
    left = k - len(picks)
    rest = np.setdiff1d(pool, drifting)
    if left <= 0 or rest.size == 0:
        return picks
    if c.embeddings is None:
        return picks + _uncertainty(c, left, seed, rest)
    size = max(UNCERTAIN_POOL_FACTOR * left, int(np.ceil(UNCERTAIN_SHARE * rest.size)))
    shortlist = rest[np.argsort(c.margin[rest], kind="stable")][:size]
    centers = [c.embeddings[drifting]] if drifting.size else []
    if c.labelled_embeddings is not None and len(c.labelled_embeddings):
        centers.append(c.labelled_embeddings)
    chosen, distances = k_center_greedy(
        c.embeddings[shortlist], left, np.concatenate(centers) if centers else None
    )
    return picks + [
        (
            int(shortlist[j]),
            f"{_near_threshold(c.margin[shortlist[j]])}; diverse: {d:.2f} from the nearest case "
            "chosen or labelled",
        )
        for j, d in zip(chosen, distances, strict=True)
    ]


def _near_threshold(margin: float) -> str:
    return f"uncertain: {margin:.3f} from the operating threshold"


Policy = Callable[[Candidates, int, int, np.ndarray], list[tuple[int, str]]]
POLICIES: dict[str, Policy] = {
    "random": _random,
    "uncertainty": _uncertainty,
    "combined": _combined,
}


def register_policy(name: str, policy: Policy) -> None:
    """Make ``policy`` choosable by ``name`` (settings, benchmark, queue)."""
    if name == AUDIT:
        raise ValueError(f"{AUDIT!r} names the audit sample, not a policy")
    POLICIES[name] = policy


def select(
    candidates: Candidates, budget: Budget, *, policy: str = "combined", seed: int = 0
) -> list[Choice]:
    """The audit sample first (``budget.audit`` cases by seeded hash), then ``budget.policy``
    cases ranked by ``policy`` among the rest; never more than the budget, never a case twice.

    Raises:
        ValueError: ``policy`` is not registered.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown selection policy {policy!r}; known: {sorted(POLICIES)}")
    everyone = np.arange(len(candidates.ids))
    audit_order = np.argsort(seeded_rank(candidates.draw_keys, seed, AUDIT), kind="stable")
    audit = audit_order[: budget.audit]
    choices = [
        Choice(int(i), candidates.ids[i], AUDIT, "audit: a seeded uniform sample of the site")
        for i in audit
    ]
    rest = np.setdiff1d(everyone, audit)
    for i, reason in POLICIES[policy](candidates, min(budget.policy, rest.size), seed, rest):
        choices.append(Choice(i, candidates.ids[i], policy, reason))
    return choices


@dataclass(frozen=True)
class LabelledCase:
    """A labelled case of the site: whether the finding is present, flagged, and who chose it."""

    positive: bool
    flagged: bool
    policy: str | None


def split_by_source(cases: Sequence[LabelledCase]) -> tuple[list[LabelledCase], list[LabelledCase]]:
    """The audit-sample labels and the others: only the first are a uniform sample of the site."""
    audit = [c for c in cases if c.policy == AUDIT]
    return audit, [c for c in cases if c.policy != AUDIT]


def spent_by_policy(policies: Sequence[str | None]) -> Mapping[str, int]:
    """How many labels each policy has spent (None: labelled outside the budgeted queue)."""
    counts: dict[str, int] = {}
    for p in policies:
        key = p or "unbudgeted"
        counts[key] = counts.get(key, 0) + 1
    return counts


@dataclass(frozen=True)
class Rate:
    """A proportion with its Wilson interval (None when there is nothing to count)."""

    value: float | None
    low: float | None
    high: float | None
    n: int


def _rate(successes: int, n: int) -> Rate:
    if n == 0:
        return Rate(None, None, None, 0)
    low, high = wilson_interval(successes, n)
    return Rate(successes / n, low, high, n)


def audit_performance(cases: Sequence[LabelledCase]) -> tuple[Rate, Rate]:
    """Sensitivity and specificity at the operating threshold on the audit sample only, with
    95 % Wilson intervals: the site's performance estimate that no policy's choices bias."""
    audit, _ = split_by_source(cases)
    tp = sum(c.positive and c.flagged for c in audit)
    positives = sum(c.positive for c in audit)
    tn = sum(not c.positive and not c.flagged for c in audit)
    return _rate(tp, positives), _rate(tn, len(audit) - positives)
