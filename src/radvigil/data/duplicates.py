"""Find exact (same sha256) and near (perceptual hash) duplicate groups among dataset items.

Near duplicates use a 256-bit DCT perceptual hash (``imagehash.phash`` with ``hash_size=16``).
On the Kermany set, distinct images are never closer than 38 bits, while re-encoded, resized,
blurred, noised or brightened copies of one image stay within about 16 bits; the default
threshold of 20 bits sits between the two. The 64-bit default hash cannot tell these paediatric
radiographs apart (different children within 2 bits), which is why it is not used.
"""

from __future__ import annotations

from collections.abc import Sequence

import imagehash
import numpy as np
from PIL import Image as PILImage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

HASH_SIZE = 16
_BLOCK_ELEMENTS = 8_000_000  # uint64 words compared per step (64 MB)


def perceptual_hash(pixels: np.ndarray, hash_size: int = HASH_SIZE) -> str:
    """The DCT perceptual hash of 8-bit grayscale pixels, as a hex string."""
    return str(imagehash.phash(PILImage.fromarray(pixels), hash_size=hash_size))


def exact_groups(digests: Sequence[str]) -> list[list[int]]:
    """Indices of items sharing a sha256, one list per group of two or more."""
    by_digest: dict[str, list[int]] = {}
    for index, digest in enumerate(digests):
        if digest:
            by_digest.setdefault(digest, []).append(index)
    return [members for members in by_digest.values() if len(members) > 1]


def near_groups(hashes: Sequence[str], max_distance: int) -> list[list[int]]:
    """Connected groups of items whose hashes differ in at most ``max_distance`` bits.

    Items with an empty hash (unreadable images) are left out. The comparison is all-pairs,
    in row blocks so memory stays bounded: about a second for 6,000 images.
    """
    known = [i for i, h in enumerate(hashes) if h]
    if len(known) < 2:
        return []
    words = _as_words([hashes[i] for i in known])
    rows, cols = _close_pairs(words, max_distance)
    if rows.size == 0:
        return []
    n = len(known)
    graph = coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = {}
    for local, comp in enumerate(component):
        groups.setdefault(int(comp), []).append(known[local])
    return [members for members in groups.values() if len(members) > 1]


def _as_words(hashes: list[str]) -> np.ndarray:
    """Hex hashes as an (n, words) uint64 array for vectorised Hamming distances."""
    width = max(len(h) for h in hashes)
    width += -width % 16  # pad to whole 64-bit words
    raw = b"".join(bytes.fromhex(h.rjust(width, "0")) for h in hashes)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(hashes), -1)


def _close_pairs(words: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) within ``max_distance`` bits of each other."""
    found_rows, found_cols = [], []
    step = max(1, _BLOCK_ELEMENTS // words.size)
    for start in range(0, len(words), step):
        block = words[start : start + step]
        distance = np.bitwise_count(block[:, None, :] ^ words[None, :, :]).sum(-1, dtype=np.int32)
        r, c = np.nonzero(distance <= max_distance)
        r = r + start
        upper = r < c
        found_rows.append(r[upper])
        found_cols.append(c[upper])
    return np.concatenate(found_rows), np.concatenate(found_cols)
