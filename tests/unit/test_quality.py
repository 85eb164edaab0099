"""Image QC on real X-rays: duplicates and leakage, unusable images, and --exclude."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from radvigil.data.duplicates import near_groups
from radvigil.data.importers import from_folder
from radvigil.data.io import read_image
from radvigil.data.manifest import DatasetVersion
from radvigil.data.qc_checks import CHECKS, load_qc_config
from radvigil.data.quality import QCConfig, exclude_failing, run_qc
from radvigil.errors import ConfigError
from radvigil.service.assessment import quality_issues
from tests.unit.qc_images import make_problem_folder, spoil_after_import

DUPLICATE = "kermany/train/normal/NORMAL2-IM-0587-0001-0002.jpg"
ITS_TWIN = "kermany/train/normal/NORMAL2-IM-0587-0001-0001.jpg"


@pytest.fixture(scope="module")
def bundled_report(bundled_version: DatasetVersion):
    return run_qc(bundled_version)


def test_in_split_duplicates_are_warnings_and_nothing_fails(
    bundled_report, bundled_version: DatasetVersion
) -> None:
    assert bundled_report.items == len(bundled_version.frame)
    assert bundled_report.duplicate_counts("exact") == (5, 0)
    assert bundled_report.duplicate_counts("near") == (0, 0)
    flagged = {c.check: c.flagged for c in bundled_report.checks}
    assert flagged["exact_duplicate"] == 5
    assert flagged["leakage"] == 0
    assert bundled_report.failing_paths() == []
    assert DUPLICATE in bundled_report.warned_paths()
    assert ITS_TWIN not in bundled_report.warned_paths()  # the first copy stays unflagged


def test_duplicate_moved_to_another_split_is_leakage(bundled_version: DatasetVersion) -> None:
    frame = bundled_version.frame
    picked = frame[frame["path"].isin([DUPLICATE, ITS_TWIN]) | (frame.index % 50 == 0)].copy()
    picked.loc[picked["path"] == DUPLICATE, "split"] = "train"
    version = DatasetVersion(picked.reset_index(drop=True), bundled_version.root)

    report = run_qc(version)

    assert report.duplicate_counts("exact") == (1, 1)
    assert report.failing_paths() == [ITS_TWIN]  # the test copy; the train copy stays
    leak = next(f for f in report.flags if f.check == "leakage")
    assert leak.severity == "fail"
    assert DUPLICATE in leak.message
    kept = exclude_failing(version, report)
    assert len(kept.frame) == len(version.frame) - 1
    assert ITS_TWIN not in set(kept.frame["path"])
    assert kept.meta["derived_from"] == version.id
    assert kept.meta["qc_exclude"]["excluded"] == [{"path": ITS_TWIN, "checks": ["leakage"]}]
    assert kept.id != version.id


def test_problem_images_are_flagged_by_the_right_check(
    tmp_path: Path, xrays: list[tuple[str, np.ndarray]]
) -> None:
    expected = make_problem_folder(tmp_path, xrays)
    version = from_folder(tmp_path).version
    spoil_after_import(tmp_path, xrays)

    report = run_qc(version)

    failed = report.excluded_by_check()
    assert set(failed) == set(expected)
    for path, check in expected.items():
        assert check in failed[path], (path, failed[path])
    by_path = report.flags_frame().groupby("path")["check"].apply(set).to_dict()
    assert by_path["train/normal/dim.png"] == {"low_contrast"}
    assert "train/normal/dim.png" in report.warned_paths()
    assert not [p for p in by_path if "/ok" in p], by_path
    assert report.duplicate_counts("near") == (1, 1)
    assert "bytes differ" in next(f.message for f in report.flags if "changed" in f.path)
    kept = exclude_failing(version, report)
    assert len(kept.frame) == len(version.frame) - len(expected)
    assert "train/normal/dim.png" in set(kept.frame["path"])


def test_the_service_flags_the_same_images_with_the_same_words(
    tmp_path: Path, xrays: list[tuple[str, np.ndarray]]
) -> None:
    make_problem_folder(tmp_path, xrays)
    report = run_qc(from_folder(tmp_path).version)
    per_image = {"too_small", "aspect_ratio", "low_contrast", "exposure", "not_radiograph"}
    assert {f.check for f in report.flags} >= per_image  # one problem image per check
    for path in sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*")):
        dataset = {
            f"{f.check}: {f.message}"
            for f in report.flags
            if f.path == path and f.check in per_image
        }
        served = set(quality_issues(read_image(tmp_path / path)))
        assert served == dataset, path


def test_severity_override_and_check_subset(
    tmp_path: Path, xrays: list[tuple[str, np.ndarray]]
) -> None:
    make_problem_folder(tmp_path, xrays)
    version = from_folder(tmp_path).version
    config = QCConfig(checks=["low_contrast", "too_small"], severity={"low_contrast": "fail"})
    report = run_qc(version, config)
    assert [c.check for c in report.checks] == ["low_contrast", "too_small"]
    assert "train/normal/dim.png" in report.failing_paths()
    assert "train/normal/tinted.png" not in report.failing_paths()


def test_unknown_check_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown QC check 'blurry'; valid checks: \['aspect"):
        QCConfig(checks=["blurry"])
    config_file = tmp_path / "qc.yaml"
    config_file.write_text("min_std: 25\nmax_colorfulness: -1\n")
    with pytest.raises(ConfigError, match="max_colorfulness"):
        load_qc_config(config_file)
    config_file.write_text("min_std: 25\n")
    assert load_qc_config(config_file).min_std == 25
    assert set(QCConfig().model_dump()) >= {"min_side", "max_aspect_ratio", "near_duplicate_bits"}
    assert len(CHECKS) == 10


def test_near_groups_chain_close_hashes_only() -> None:
    base = "f" * 64
    one_bit = "e" + "f" * 63
    far = "0" * 64
    assert near_groups([base, one_bit, far, ""], max_distance=1) == [[0, 1]]
    assert near_groups([base, far], max_distance=20) == []


def test_reencoded_copy_is_a_near_duplicate_but_different_patients_are_not(
    xrays: list[tuple[str, np.ndarray]],
) -> None:
    from radvigil.data.duplicates import perceptual_hash

    pixels = xrays[0][1]
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).resize((112, 112)).save(buffer, format="JPEG", quality=40)
    copy = np.asarray(PILImage.open(buffer).resize((224, 224)))
    hashes = [perceptual_hash(p) for p in (pixels, copy, *(x for _, x in xrays[1:]))]
    groups = near_groups(hashes, QCConfig().near_duplicate_bits)
    assert groups == [[0, 1]]
