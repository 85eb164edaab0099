"""Issue 30's smaller findings: derive stays in its folder, feedback comments hold no PHI,
study hashes are keyed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from radvigil.data.derived import derive, inside
from radvigil.data.manifest import DatasetVersion
from radvigil.data.shifts import compose, parse_shift
from radvigil.errors import DataError
from radvigil.service.inference import study_hash
from radvigil.service.schemas import FeedbackIn, StudyMetadata


def test_derive_refuses_a_manifest_path_that_climbs_out_of_its_output_folder(
    bundled_version: DatasetVersion, tmp_path: Path
) -> None:
    first = bundled_version.frame.iloc[:1].copy()
    source_root = tmp_path / "data" / "inner"
    source_root.mkdir(parents=True)
    shutil.copy(bundled_version.root / first["path"].iloc[0], tmp_path / "data" / "escape.jpeg")
    first["path"] = "../escape.jpeg"  # a real, readable image one folder up
    out = tmp_path / "out" / "derived"
    with pytest.raises(DataError, match="escapes the output folder"):
        derive(
            DatasetVersion(first, source_root),
            seed=1,
            shift=compose(parse_shift("gaussian_noise:sigma=6")),
            out_root=out,
        )
    assert not list(tmp_path.glob("out/*.png")) and not out.exists()


@pytest.mark.parametrize("path", ["/etc/x.png", "a/../../x.png", "C:/x.png", "..\\x.png"])
def test_inside_refuses_absolute_drive_and_parent_paths(tmp_path: Path, path: str) -> None:
    with pytest.raises(DataError, match="escapes"):
        inside(tmp_path, path)
    assert inside(tmp_path, "a/b/../c.png") == tmp_path / "a/b/../c.png"


def test_feedback_comments_with_names_ids_or_dates_are_refused() -> None:
    for comment in ("seen by Mr Smith", "MRN 12345678", "scan of 3 March 2024"):
        with pytest.raises(ValidationError, match="must not contain names, ids or dates"):
            FeedbackIn(prediction_id="p1", label="normal", comment=comment)
    assert FeedbackIn(prediction_id="p1", label="normal", comment="faint opacity, left base")


def test_study_hash_is_keyed() -> None:
    meta = StudyMetadata(study_uid="1.2.840.113619.2.55.3")
    one, two = study_hash(b"", meta, b"key-one"), study_hash(b"", meta, b"key-two")
    assert one != two and len(one) == 32
    assert study_hash(b"", meta, b"key-one") == one
