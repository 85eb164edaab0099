"""Deterministic UIDs for derived objects: the same source and model version, the same UID.

A re-sent study therefore yields the very same SR and Secondary Capture (the PACS keeps one
copy), while a new model version yields new objects beside the old ones.
"""

from __future__ import annotations

from pydicom.uid import generate_uid


def derived_uid(*parts: str) -> str:
    """A ``2.25`` UID hashed from ``parts`` (e.g. source SOP Instance UID, model, version, kind)."""
    return generate_uid(prefix=None, entropy_srcs=["radvigil", *parts])
