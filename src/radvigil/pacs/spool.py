"""The DICOM spool: received instances on disk until the worker has turned them into results.

Files are named by hashes of their UIDs and the calling AE's hex, never by the UIDs themselves
(a Study Instance UID identifies a patient), and written atomically (temp file + rename), so a
crash leaves either a whole instance or none. ``outgoing/`` holds the built SR/SC files (and
FHIR bundles, HL7 messages) the outbox still has to deliver.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def uid_key(uid: str) -> str:
    """A pseudonymous key of a DICOM UID (32 hex digits of its SHA-256)."""
    return hashlib.sha256(uid.encode()).hexdigest()[:32]


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class SpooledInstance:
    """One received instance: its file, its study's key and who sent it."""

    path: Path
    study_key: str
    sop_key: str
    calling_ae: str


@dataclass(frozen=True)
class SpooledStudy:
    """The instances of one study received so far, and when the last one arrived."""

    study_key: str
    instances: list[SpooledInstance]
    last_arrival: float


class DicomSpool:
    """``incoming/<study key>/<sop key>.<calling AE hex>.dcm`` and ``outgoing/<name>.dcm``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.outgoing = root / "outgoing"

    def put(self, data: bytes, study_uid: str, sop_uid: str, calling_ae: str) -> SpooledInstance:
        """Store one received instance (a re-sent instance replaces its earlier copy)."""
        study, sop = uid_key(study_uid), uid_key(sop_uid)
        path = self.incoming / study / f"{sop}.{calling_ae.encode().hex()}.dcm"
        write_atomic(path, data)
        return SpooledInstance(path, study, sop, calling_ae)

    def studies(self) -> list[SpooledStudy]:
        """Every study with instances waiting, oldest last arrival first."""
        if not self.incoming.is_dir():
            return []
        found = []
        for folder in self.incoming.iterdir():
            instances, newest = [], 0.0
            for path in folder.glob("*.dcm"):
                sop, ae_hex = path.name.removesuffix(".dcm").split(".", 1)
                instances.append(
                    SpooledInstance(path, folder.name, sop, bytes.fromhex(ae_hex).decode())
                )
                newest = max(newest, path.stat().st_mtime)
            if instances:
                found.append(
                    SpooledStudy(folder.name, sorted(instances, key=lambda i: i.sop_key), newest)
                )
        return sorted(found, key=lambda s: s.last_arrival)

    def settled(self, quiet_s: float, now: float | None = None) -> list[SpooledStudy]:
        """Studies with no new instance for ``quiet_s`` seconds (DIMSE has no "study complete")."""
        now = time.time() if now is None else now
        return [s for s in self.studies() if now - s.last_arrival >= quiet_s]

    def done(self, instance: SpooledInstance) -> None:
        """Forget a processed instance (its study folder goes when empty)."""
        instance.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # other instances of the study are still there
            instance.path.parent.rmdir()

    def put_outgoing(self, name: str, data: bytes, suffix: str = ".dcm") -> str:
        """Store a built result object; returns the name the outbox row keeps."""
        write_atomic(self.outgoing / f"{name}{suffix}", data)
        return f"{name}{suffix}"

    def outgoing_path(self, name: str) -> Path:
        return self.outgoing / name
