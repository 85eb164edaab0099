"""Window alerts ranked by harm, on real windows: bundled films processed by ``data/shifts.py``.

The reference is the bundled development batch's validation films; windows are the site's other
acquisition batch (Kermany's test folder), unprocessed or processed with a perturbation of the
robustness suite, all through the real image statistics and the real monitor. The trained
network is not part of unit tests, so its probabilities are stood in for by a calibrated
logistic regression fitted on the bundled training films: on a coarse copy of the film (anatomy)
and on its fine-texture statistics, which a CNN reads too and processing moves.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image as PILImage
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from radvigil.data.shifts import apply_shift, get_shift
from radvigil.monitoring import Monitor, MonitorConfig, ReferenceProfile, WindowData
from radvigil.monitoring.features import image_stats_frame
from radvigil.monitoring.harm import (
    expected_rates,
    load_signatures,
    match_signature,
    median_change,
    reference_scale,
)

CLASSES = ["normal", "pneumonia"]
TEXTURE = ["sharpness", "hf_ratio", "noise_sigma", "blockiness"]
BUNDLED = Path(__file__).resolve().parents[2] / "data" / "bundled"


def _films(frame: pd.DataFrame) -> list[np.ndarray]:
    return [np.asarray(PILImage.open(BUNDLED / p).convert("L")) for p in frame["path"]]


def _features(films: list[np.ndarray], stats: pd.DataFrame) -> np.ndarray:
    coarse = np.stack(
        [np.asarray(PILImage.fromarray(f).resize((32, 32), PILImage.Resampling.BOX)) for f in films]
    ).reshape(len(films), -1)
    return np.hstack([coarse / 255.0, np.log(stats[TEXTURE].to_numpy() + 1e-3)])


@cache
def _world() -> tuple[object, ReferenceProfile, list[np.ndarray], np.ndarray, float]:
    manifest = pd.read_csv(BUNDLED / "manifest.csv")
    train, val = manifest[manifest["split"] == "train"], manifest[manifest["split"] == "val"]
    train_films = _films(train)
    train_x = _features(train_films, image_stats_frame(train_films))
    model = CalibratedClassifierCV(
        make_pipeline(StandardScaler(), PCA(24, random_state=0), LogisticRegression(C=0.5)),
        method="isotonic",
        cv=3,
    ).fit(train_x, (train["label"] == "pneumonia").to_numpy(int))
    embed = make_pipeline(StandardScaler(), PCA(8, random_state=0)).fit(train_x)
    val_films = _films(val)
    stats = image_stats_frame(val_films)
    x = _features(val_films, stats)
    probs = model.predict_proba(x)
    labels = (val["label"] == "pneumonia").to_numpy(np.int64)
    # the served threshold: the highest that keeps sensitivity >= 0.95 on the reference
    threshold = float(np.quantile(probs[labels == 1, 1], 0.05))
    profile = ReferenceProfile.build(
        embed.transform(x),
        probs,
        labels,
        stats,
        None,
        class_names=CLASSES,
        n_components=4,
    )
    stream = pd.read_csv(BUNDLED / "stream.csv")
    site = stream[stream["acquisition_batch"] == "test-folder"].sample(200, random_state=0)
    site_labels = (site["label"] == "pneumonia").to_numpy(np.int64)
    return model, profile, _films(site), site_labels, threshold


def _window(shift: str | None = None, **params: float) -> WindowData:
    model, _, films, labels, _ = _world()
    if shift is not None:
        fn = get_shift(shift, **params)
        films = [apply_shift(x, fn, (0, i)) for i, x in enumerate(films)]
    stats = image_stats_frame(films)
    probs = model.predict_proba(_features(films, stats))  # type: ignore[attr-defined]
    return WindowData(probs=probs, labels=labels, stats=stats)


def _monitor() -> Monitor:
    _, profile, _, _, threshold = _world()
    config = MonitorConfig.model_validate(
        {
            "detectors": {
                "image_stats": {},
                "bbsd": {},
                "cbpe": {},
                "harm": {"positive_class": 1, "decision_threshold": threshold},
            },
            "alerts": [{"detector": "image_stats"}],
        }
    )
    return Monitor(profile, config)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("shift", "params", "level"),
    [
        ("sharpen", {"amount": 2.0}, "strong"),
        ("jpeg", {"quality": 20}, "strong"),
        ("gaussian_noise", {"sigma": 10}, "strong"),
        ("blur", {"sigma": 1.5}, "strong"),
    ],
)
def test_a_processed_window_is_explained_by_its_perturbation(shift, params, level) -> None:
    report = _monitor().run(_window(shift, **params))
    harm = report.result("harm")
    assert harm is not None and harm.skipped is None, harm
    explained = harm.details["explained_by"]
    assert explained is not None, harm.details
    assert (explained["shift"], explained["level"]) == (shift, level), explained
    assert harm.details["summary"].startswith(f"looks like {level} ")
    moved = harm.details["moved_most"]
    assert moved["statistic"]["name"] in harm.details["processing_change"] or moved["statistic"]


@pytest.mark.slow
def test_windows_rank_by_estimated_harm_as_by_realised_harm() -> None:
    """At the served threshold, the window whose specificity really falls most (strong JPEG,
    by the labels kept from the detector) is estimated to fall most, and the one that falls
    least (strong noise, for this stand-in) least. CBPE trusts the probabilities' calibration,
    so it underestimates the size of a fall under shift: the order is what it gets right."""
    _, _, _, labels, threshold = _world()
    monitor, realised, estimated = _monitor(), {}, {}
    for name, shift, params in (
        ("clean", None, {}),
        ("jpeg", "jpeg", {"quality": 20.0}),
        ("noise", "gaussian_noise", {"sigma": 10.0}),
    ):
        data = _window(shift, **params)
        harm = monitor.run(data).result("harm")
        assert harm is not None and harm.statistic is not None
        assert harm.statistic == pytest.approx(-min(harm.details["change"].values()))
        estimated[name] = harm.details["change"]["specificity"]
        realised[name] = float((data.probs[labels == 0, 1] < threshold).mean())
    order = sorted(realised, key=realised.__getitem__)
    assert order == ["jpeg", "clean", "noise"], realised  # the stand-in's real behaviour
    assert sorted(estimated, key=estimated.__getitem__) == order, (estimated, realised)


@pytest.mark.slow
def test_the_unprocessed_site_window_is_not_called_a_perturbation() -> None:
    report = _monitor().run(_window())
    harm = report.result("harm")
    assert harm is not None and harm.details["explained_by"] is None
    assert "no perturbation of the robustness suite explains it" in harm.details["summary"]


@pytest.mark.slow
def test_an_alert_on_the_window_quotes_the_harm_summary() -> None:
    monitor = _monitor()
    report = monitor.run(_window("sharpen", amount=2.0))
    opened = monitor.alerts([report]).opened
    assert [a.detector for a in opened] == ["image_stats"]
    assert report.result("harm").details["summary"] in opened[0].message
    assert "moved most" in opened[0].message


def test_expected_rates_follow_the_threshold() -> None:
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.05, 0.95]])
    rates = expected_rates(probs, 1, 0.3)
    tp, fn = 0.4 + 0.8 + 0.95, 0.1
    tn, fp = 0.9, 0.6 + 0.2 + 0.05
    assert rates["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert rates["specificity"] == pytest.approx(tn / (tn + fp))
    assert expected_rates(probs, 1, 0.99)["specificity"] == pytest.approx(1.0)


def test_every_suite_signature_matches_itself_and_a_small_move_matches_none() -> None:
    _, profile, _, _, _ = _world()
    scale = reference_scale(profile.reference.stats)
    for sig in load_signatures():
        found = match_signature(sig.change, scale)
        if found is not None:  # a mild change may be too small to name (MIN_SHIFT)
            assert (found.shift, found.level) == (sig.shift, sig.level)
    strong = [s for s in load_signatures() if s.level == "strong"]
    assert all(match_signature(s.change, scale) is not None for s in strong)
    ref = profile.reference.stats
    assert match_signature(median_change(ref, ref), scale) is None


@pytest.mark.slow
def test_the_monitoring_page_reads_the_stored_harm_of_the_newest_window() -> None:
    """Stored as the runner stores it, read back as the dashboard's drift page reads it."""
    from datetime import UTC, datetime

    from radvigil.dashboard.monitors import harm_reading
    from radvigil.loop.monitor_windows import to_results
    from radvigil.store import MonitorResultPublic

    report = _monitor().run(_window("sharpen", amount=2.0))
    end = datetime(2026, 12, 7, tzinfo=UTC)
    created = to_results(
        report, model_name="m", model_version="1", kind="count", start=end, end=end
    )
    rows = [
        MonitorResultPublic(id=i, created_at=end, **r.model_dump()) for i, r in enumerate(created)
    ]
    reading = harm_reading(rows, "all")
    assert reading is not None
    assert reading["summary"].startswith("looks like strong sharpening, estimated ")
    assert reading["explained_by"]["shift"] == "sharpen"
    assert reading["moved_most"]["statistic"]["name"]
    assert harm_reading(rows, "site=B") is None
