"""Deterministic UIDs for derived objects: the same source and model version, the same UID.

A re-sent study therefore yields the very same SR and Secondary Capture (the PACS keeps one
copy), while a new model version yields new objects beside the old ones. The UID is the ``2.25``
form of a 128-bit hash (as a UUID would be); pydicom's ``generate_uid(prefix=None)`` ignores its
entropy sources and is random, so it cannot serve here.
"""

from __future__ import annotations

import hashlib


def derived_uid(*parts: str) -> str:
    """A ``2.25.<int>`` UID hashed from ``parts`` (e.g. source SOP Instance UID, model, version)."""
    digest = hashlib.sha256("\x00".join(["radvigil", *parts]).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"
