"""Metadata names: a client's alias of the reference's site is not drift, nor is a value not sent.

Real PneumoniaMNIST pixels through the stand-in model of ``monitoring_data``; the reference was
acquired at site ``A`` only.
"""

from __future__ import annotations

import pandas as pd

from radvigil.monitoring import Monitor, monitor_config_from_dict
from tests.unit.monitoring_data import split, stand_in

CONFIG = {
    "detectors": {"metadata": {}},
    "alerts": [],
    "names": {"site": {"aliases": {"guangzhou-ward": "A"}}},
}


def _metadata(sites: list[str | None], names: dict | None = None):
    data = stand_in()
    reference, held = split(300)
    config = monitor_config_from_dict({**CONFIG, "names": names or CONFIG["names"]})
    monitor = Monitor(data.profile(reference), config)
    window = data.window(held[: len(sites)])
    window = type(window)(**{**window.__dict__, "metadata": pd.DataFrame({"site": sites})})
    return monitor.run(window).result("metadata")


def test_a_site_alias_does_not_raise_metadata_drift() -> None:
    assert _metadata(["B"] * 60).drift  # another site is drift
    aliased = _metadata(["guangzhou-ward"] * 60)
    assert not aliased.drift and aliased.details["columns"]["site"]["p_value"] == 1.0


def test_missing_site_is_ignored_not_drift() -> None:
    result = _metadata([None] * 30 + ["unknown"] * 30)
    assert not result.drift
    assert (
        result.skipped == "no metadata columns shared by reference and window (not sent: ['site'])"
    )
    partly = _metadata([None] * 30 + ["A"] * 30)
    assert not partly.drift and partly.skipped is None


def test_unknown_values_can_count_as_missing() -> None:
    names = {"site": {"unknown": "missing"}}
    assert _metadata(["B"] * 60, names).skipped is not None
    assert _metadata(["B"] * 60).drift
