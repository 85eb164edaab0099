"""Where dataset versions live: ``HOME/datasets/<id>/manifest.parquet`` plus ``meta.json``."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from radvigil.data.manifest import DatasetVersion, canonical, to_json
from radvigil.errors import NotFoundError

# Keys the catalog writes itself; a version derived from a saved one must not inherit them.
_BOOKKEEPING = frozenset({"id", "name", "root", "created_at", "items"})


class DatasetCatalog:
    """Saves and finds dataset versions under a folder; refs are ids, id prefixes or ``latest``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def save(self, version: DatasetVersion, name: str | None = None) -> str:
        """Store a version (idempotent: the same manifest keeps its id and first timestamp)."""
        vid = version.id
        target = self.folder / vid
        meta_file = target / "meta.json"
        if meta_file.exists():
            meta = json.loads(meta_file.read_text())
            meta["root"] = str(version.root)
        else:
            target.mkdir(parents=True, exist_ok=True)
            canonical(version.frame).to_parquet(target / "manifest.parquet", index=False)
            provenance = {k: v for k, v in version.meta.items() if k not in _BOOKKEEPING}
            meta = {
                **provenance,
                "id": vid,
                "root": str(version.root),
                "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
                "items": len(version.frame),
            }
        if name:
            meta["name"] = name
        meta_file.write_text(to_json(meta))
        version.meta = meta
        return vid

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A scratch folder for a new version's images; removed unless adopted by a save."""
        folder = self.folder / ".staging" / uuid.uuid4().hex
        folder.mkdir(parents=True)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def save_with_images(
        self, version: DatasetVersion, staged: Path, name: str | None = None
    ) -> str:
        """Save a version whose images were written to ``staged``; they move to ``<id>/images``.

        Saving the same derivation twice keeps the first copy of the images.
        """
        target = self.folder / version.id / "images"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            staged.rename(target)
        version.root = target
        return self.save(version, name=name)

    def ids(self) -> list[str]:
        if not self.folder.exists():
            return []
        return sorted(p.name for p in self.folder.iterdir() if (p / "meta.json").exists())

    def list(self) -> list[dict]:
        metas = [json.loads((self.folder / i / "meta.json").read_text()) for i in self.ids()]
        return sorted(metas, key=lambda m: m.get("created_at", ""))

    def resolve(self, ref: str) -> str:
        known = self.ids()
        if ref == "latest":
            listed = self.list()
            if not listed:
                raise NotFoundError("no dataset versions yet; run `radvigil data import` first")
            return listed[-1]["id"]
        matches = [i for i in known if i == ref or i.startswith(ref)]
        matches += [m["id"] for m in self.list() if m.get("name") == ref and m["id"] not in matches]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise NotFoundError(f"no dataset version {ref!r}; known: {known[-5:] or 'none'}")
        raise NotFoundError(f"dataset ref {ref!r} is ambiguous: {matches}")

    def load(self, ref: str) -> DatasetVersion:
        vid = self.resolve(ref)
        folder = self.folder / vid
        meta = json.loads((folder / "meta.json").read_text())
        frame = pd.read_parquet(folder / "manifest.parquet")
        return DatasetVersion(frame, Path(meta["root"]), meta)
