"""Controlled shifts: properties of every pixel shift, population scenarios, derived versions."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from radvigil.data.derived import derive
from radvigil.data.io import read_image
from radvigil.data.manifest import DatasetVersion, file_sha256
from radvigil.data.populations import resample_prevalence, subset, target_shares
from radvigil.data.shifts import SHIFTS, apply_shift, compose, get_shift, parse_shift
from radvigil.errors import ConfigError, DataError, InputError

BUNDLED = Path(__file__).resolve().parents[2] / "data" / "bundled"
NAMES = sorted(SHIFTS)
FAST = settings(max_examples=25, deadline=None)


@cache
def real_xray() -> np.ndarray:
    return read_image(BUNDLED / "kermany/test/pneumonia/person104_bacteria_491.jpg").pixels


small_images = arrays(
    np.uint8,
    st.tuples(st.integers(1, 40), st.integers(1, 40)),
    elements=st.integers(0, 255),
)


@FAST
@given(name=st.sampled_from(NAMES), strength=st.floats(0, 3), seed=st.integers(0, 2**32 - 1))
def test_shape_and_dtype_are_kept_on_a_real_xray(name: str, strength: float, seed: int) -> None:
    pixels = real_xray()
    out = apply_shift(pixels, get_shift(name, strength=strength), seed)
    assert out.shape == pixels.shape
    assert out.dtype == np.uint8


@FAST
@given(name=st.sampled_from(NAMES), pixels=small_images, seed=st.integers(0, 1000))
def test_shape_and_dtype_are_kept_on_any_small_array(
    name: str, pixels: np.ndarray, seed: int
) -> None:
    out = apply_shift(pixels, get_shift(name), seed)
    assert (out.shape, out.dtype) == (pixels.shape, np.uint8)


@pytest.mark.parametrize("name", NAMES)
def test_zero_strength_is_the_identity(name: str) -> None:
    pixels = real_xray()
    np.testing.assert_array_equal(apply_shift(pixels, get_shift(name, strength=0), 1), pixels)
    assert not np.array_equal(apply_shift(pixels, get_shift(name), 1), pixels)


@FAST
@given(name=st.sampled_from(NAMES), seed=st.integers(0, 2**32 - 1))
def test_same_seed_same_output(name: str, seed: int) -> None:
    shift = compose(get_shift(name), get_shift("gaussian_noise", sigma=3))
    first = apply_shift(real_xray(), shift, seed)
    np.testing.assert_array_equal(first, apply_shift(real_xray(), shift, seed))


@FAST
@given(
    name=st.sampled_from(["gaussian_noise", "poisson_noise", "speckle"]),
    seeds=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)).filter(lambda s: s[0] != s[1]),
)
def test_different_seeds_give_different_noise(name: str, seeds: tuple[int, int]) -> None:
    shift = get_shift(name)
    a, b = (apply_shift(real_xray(), shift, s) for s in seeds)
    assert not np.array_equal(a, b)


def test_shifts_move_pixels_the_expected_way() -> None:
    x = real_xray()
    mean, std = float(x.mean()), float(x.std())
    assert apply_shift(x, get_shift("brightness", factor=1.2)).mean() > mean + 5
    assert apply_shift(x, get_shift("contrast", factor=0.5)).std() < std * 0.6
    assert apply_shift(x, get_shift("gamma", gamma=2.0)).mean() < mean - 10
    sharpness = np.abs(np.diff(x.astype(float), axis=1)).mean()
    blurred = apply_shift(x, get_shift("blur", sigma=2)).astype(float)
    assert np.abs(np.diff(blurred, axis=1)).mean() < sharpness * 0.7
    noisy = apply_shift(x, get_shift("gaussian_noise", sigma=10), 0).astype(float)
    assert (noisy - x).std() == pytest.approx(10, rel=0.15)
    rotated = apply_shift(x, get_shift("rotation", degrees=30))
    assert rotated[0, 0] == 0  # black corner
    assert get_shift("jpeg", strength=0.5).params == {"quality": 65.0}
    sharpened = apply_shift(x, get_shift("sharpen", amount=2)).astype(float)
    assert np.abs(np.diff(sharpened, axis=1)).mean() > sharpness * 1.3
    speckled = apply_shift(x, get_shift("speckle", sigma=0.1), 0).astype(float)
    bright, dark = x > 150, (x > 10) & (x < 60)
    # multiplicative: the noise grows with the grey level
    assert (speckled - x)[bright].std() > 2 * (speckled - x)[dark].std()


def test_compose_applies_in_order_and_describes_itself() -> None:
    a, b = get_shift("gamma", gamma=1.3), get_shift("blur", sigma=1.0)
    pipeline = compose(a, compose(b))
    x = real_xray()
    np.testing.assert_array_equal(apply_shift(x, pipeline), b(a(x, None), None))
    assert pipeline.describe() == [
        {"name": "gamma", "params": {"gamma": 1.3}},
        {"name": "blur", "params": {"sigma": 1.0}},
    ]


def test_parse_shift_and_registry_errors() -> None:
    assert parse_shift("jpeg:quality=20") == get_shift("jpeg", quality=20)
    assert parse_shift("zoom:strength=2").params == {"zoom": pytest.approx(1.4)}
    assert parse_shift("blur").params == {"sigma": 1.5}
    with pytest.raises(ConfigError, match=r"unknown shift 'brightnes'; valid shifts: \['blur'"):
        parse_shift("brightnes")
    with pytest.raises(ConfigError, match=r"no parameter\(s\) \['sigma'\]; parameters: \['factor'"):
        get_shift("brightness", sigma=2)
    with pytest.raises(ConfigError, match=r"quality=0.0 outside \[1.0, 100.0\]"):
        parse_shift("jpeg:quality=0")
    with pytest.raises(ConfigError, match="expected key=number"):
        parse_shift("jpeg:quality")
    with pytest.raises(InputError, match="2-D uint8"):
        apply_shift(real_xray().astype(float), get_shift("blur"))


def test_prevalence_resampling_hits_the_requested_share(
    bundled_version: DatasetVersion,
) -> None:
    frame = bundled_version.frame
    out = resample_prevalence(frame, {"pneumonia": 3.0}, seed=5)
    assert out["path"].is_unique
    for split, part in out.groupby("split"):
        counts = frame[frame["split"] == split]["label"].value_counts()
        wanted = target_shares(counts.sort_index(), {"pneumonia": 3.0})["pneumonia"]
        share = (part["label"] == "pneumonia").mean()
        assert share == pytest.approx(wanted, abs=1 / len(part))
        assert (part["label"] == "pneumonia").sum() == counts["pneumonia"]  # all kept
    assert out.equals(resample_prevalence(frame, {"pneumonia": 3.0}, seed=5))
    assert not out.equals(resample_prevalence(frame, {"pneumonia": 3.0}, seed=6))
    rarer = resample_prevalence(frame, {"pneumonia": 0.25}, seed=5, within=None)
    assert (rarer["label"] == "pneumonia").mean() == pytest.approx(0.2, abs=0.01)
    with pytest.raises(DataError, match=r"no class\(es\) \['covid'\]; classes: \['normal'"):
        resample_prevalence(frame, {"covid": 2.0}, seed=1)


def test_subsets_by_metadata_columns(bundled_version: DatasetVersion) -> None:
    frame = bundled_version.frame
    expected = ((frame["split"] == "val") & (frame["label"] == "normal")).sum()
    assert len(subset(frame, {"split": "val", "label": "normal"})) == expected
    assert len(subset(frame, {"view_position": "AP,PA"})) == len(frame)
    with pytest.raises(DataError, match=r"values present: \['AP'\]"):
        subset(frame, {"view_position": "PA"})
    with pytest.raises(DataError, match="cannot select on 'scanner'"):
        subset(frame, {"scanner": "x"})


def test_derived_shifted_version_is_reproducible(
    bundled_version: DatasetVersion, tmp_path: Path
) -> None:
    shift = compose(parse_shift("gaussian_noise:sigma=6"), parse_shift("jpeg:quality=40"))
    runs = []
    for run in ("a", "b"):
        runs.append(
            derive(
                bundled_version,
                seed=9,
                split="val",
                where={"label": "normal"},
                shift=shift,
                out_root=tmp_path / run,
            )
        )
    first, second = runs
    assert first.id == second.id
    frame = bundled_version.frame
    assert len(first.frame) == ((frame["split"] == "val") & (frame["label"] == "normal")).sum()
    assert first.meta["derived_from"] == bundled_version.id
    assert first.meta["derivation"]["shifts"][1] == {"name": "jpeg", "params": {"quality": 40.0}}
    row = first.frame.iloc[0]
    assert row["path"].endswith(".png")
    assert file_sha256(first.root / row["path"]) == row["sha256"]
    original = bundled_version.frame.set_index("sha256").index
    assert not set(first.frame["sha256"]) & set(original)
    untouched = derive(bundled_version, seed=9, prevalence={"normal": 0.5})
    assert untouched.root == bundled_version.root
    assert untouched.meta["derivation"]["prevalence"] == {"normal": 0.5}
