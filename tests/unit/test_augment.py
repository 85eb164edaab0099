"""Training augmentations on a real bundled radiograph: off means untouched, the tone curve moves
the grey levels the way another LUT would and keeps their order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radvigil.data.io import read_image
from radvigil.model.augment import augment
from radvigil.model.config import AugmentConfig
from radvigil.model.preprocess import resize

BUNDLED = Path(__file__).resolve().parents[2] / "data" / "bundled"
OFF = dict(brightness=0, contrast=0, hflip=0, clahe=0, rotation=0, crop_scale=1.0)


@pytest.fixture(scope="module")
def radiograph() -> np.ndarray:
    path = next(iter(sorted((BUNDLED / "kermany").rglob("*.jpg"))))
    return resize(read_image(path).pixels, 128)


def test_everything_off_leaves_the_image_untouched(radiograph: np.ndarray) -> None:
    out = augment(radiograph, AugmentConfig(**OFF), np.random.default_rng(0))
    np.testing.assert_array_equal(out, radiograph)


@pytest.mark.parametrize("switch", ["gamma", "processing", "black_corners"])
def test_an_option_off_draws_nothing_extra_so_older_configs_replay(
    radiograph: np.ndarray, switch: str
) -> None:
    cfg = AugmentConfig()
    first, second = np.random.default_rng(3), np.random.default_rng(3)
    augment(radiograph, cfg, first)
    augment(radiograph, cfg.model_copy(update={switch: 0.5}), second)
    assert first.random() != second.random()  # the option draws only when it is on
    again = np.random.default_rng(3)
    np.testing.assert_array_equal(
        augment(radiograph, cfg, again), augment(radiograph, cfg, np.random.default_rng(3))
    )


def test_levels_lift_or_crush_the_floor_and_keep_grey_order(radiograph: np.ndarray) -> None:
    cfg = AugmentConfig(**{**OFF, "levels": 0.2})
    floors = []
    for seed in range(40):
        out = augment(radiograph, cfg, np.random.default_rng(seed))
        assert out.dtype == np.uint8 and out.shape == radiograph.shape
        order = np.argsort(radiograph.ravel(), kind="stable")
        assert (np.diff(out.ravel()[order].astype(int)) >= 0).all()  # monotone: no inversion
        floors.append(np.percentile(out, 1))
    base = np.percentile(radiograph, 1)
    assert min(floors) < base - 5 and max(floors) > base + 20


def test_gamma_changes_midtones_not_the_ends(radiograph: np.ndarray) -> None:
    image = radiograph.copy()
    image[:2, :2], image[-2:, -2:] = 0, 255  # pure black and white marks on the film
    cfg = AugmentConfig(**{**OFF, "gamma": 1.0})
    outs = [augment(image, cfg, np.random.default_rng(s)) for s in range(20)]
    mids = [float(np.median(o)) for o in outs]
    assert max(mids) - min(mids) > 30
    for out in outs:
        assert (out[:2, :2] == 0).all() and (out[-2:, -2:] == 255).all()


def test_tone_strengths_are_bounded() -> None:
    with pytest.raises(ValueError):
        AugmentConfig(levels=0.6)
    with pytest.raises(ValueError):
        AugmentConfig(gamma=-0.1)


def test_processing_applies_one_suite_shift_up_to_its_mild_strength(
    radiograph: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every draw is a shift of the robustness suite with its parameter between no change and
    the suite's mild strength, and every shift of the suite is drawn."""
    import radvigil.model.augment as module
    from radvigil.data.shifts import PROCESSING_SUITE, get_spec

    drawn: list[tuple[str, dict[str, float]]] = []
    real = module.get_shift

    def recording(name: str, **params: float):
        drawn.append((name, params))
        return real(name, **params)

    monkeypatch.setattr(module, "get_shift", recording)
    cfg = AugmentConfig(**OFF, processing=1.0)
    rng = np.random.default_rng(0)
    outputs = [augment(radiograph, cfg, rng) for _ in range(80)]
    assert len(drawn) == 80 and {name for name, _ in drawn} == set(PROCESSING_SUITE)
    for name, params in drawn:
        for key, value in params.items():
            identity, mild = get_spec(name).params[key].identity, PROCESSING_SUITE[name][0][key]
            bound = abs(mild - identity)
            assert abs(value - identity) <= bound + 1e-9, (name, key, value)
    assert all(o.shape == radiograph.shape and o.dtype == np.uint8 for o in outputs)
    assert sum(not np.array_equal(o, radiograph) for o in outputs) >= 70  # they change pixels


def test_black_corners_fill_the_uncovered_border_with_black(radiograph: np.ndarray) -> None:
    black = AugmentConfig(**{**OFF, "rotation": 10.0, "black_corners": 1.0})
    mirrored = AugmentConfig(**{**OFF, "rotation": 10.0})
    corners = [0, 0, -1, -1], [0, -1, 0, -1]
    black_corners = 0
    for seed in range(5):
        a = augment(radiograph, black, np.random.default_rng(seed))
        b = augment(radiograph, mirrored, np.random.default_rng(seed))
        np.testing.assert_array_equal(a[20:-20, 20:-20], b[20:-20, 20:-20])  # same rotation
        assert (b[corners] > 0).all()  # the film's corners are not black; mirroring keeps that
        black_corners += int((a[corners] == 0).all())
    assert black_corners >= 3  # every rotation but a near-zero angle uncovers all four
