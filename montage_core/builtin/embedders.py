"""The default embedder: visual descriptors from the analysis pass plus the words stock libraries ship.

It needs no downloaded model and works on every machine. The visual part is the shot's 4×4 luma
layout (mean-centred, so it describes composition rather than exposure) with its brightness,
motion, sharpness and centre of gravity; the word part hashes the words of the clip's name and
sidecar metadata (title, tags, description) into signed buckets. A text query has only words, so
it matches sidecar words; a query by example (`--like CLIP`) matches both.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..hookspecs import hookimpl
from ..interfaces import Embedder

VISUAL_DIM = 21
WORD_DIM = 235
STOPWORDS = frozenset("a an and are as at be by for from in into is it of on or the to with this that".split())


def words_of(text: str) -> list[str]:
    """Lower-case words of two letters or more, stop words out, crude plurals folded."""
    words = [w for w in re.findall(r"[a-z0-9]{2,}", text.lower()) if w not in STOPWORDS]
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words]


class DescriptorEmbedder(Embedder):
    name = "descriptor"
    version = "1"
    dim = VISUAL_DIM + WORD_DIM
    description = "Visual layout and motion descriptors plus hashed sidecar words; no model download"

    def _words(self, text: str) -> Any:
        import hashlib  # with numpy, when a text is embedded: listings load this module too

        import numpy as np

        vector = np.zeros(WORD_DIM, np.float32)
        for word in words_of(text):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "big") % WORD_DIM
            vector[bucket] += 1.0 if digest[4] & 1 else -1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def embed_shots(self, analysis: Any, words: str) -> Any:
        import numpy as np

        text = self._words(words)
        rows = []
        for shot in analysis.shots:
            f = shot.features
            grid = np.array([f.get(f"layout_{k}", 0.0) for k in range(16)], np.float32)
            grid = grid - grid.mean()
            visual = np.concatenate([grid, np.array([
                f.get("brightness", 0.0) - 0.5, 4 * f.get("motion", 0.0), 10 * np.sqrt(max(0.0, f.get("sharpness", 0.0))),
                f.get("cog_x", 0.0), f.get("cog_y", 0.0)], np.float32)])
            norm = float(np.linalg.norm(visual))
            visual = visual / norm if norm else visual
            row = np.concatenate([0.6 * visual, 0.8 * text])
            rows.append(row / max(1e-9, float(np.linalg.norm(row))))
        return np.array(rows, np.float32).reshape(len(rows), self.dim)

    def embed_text(self, text: str) -> Any:
        import numpy as np

        return np.concatenate([np.zeros(VISUAL_DIM, np.float32), self._words(text)])


@hookimpl
def montage_register_embedders(register: Callable[[Any], None]) -> None:
    register(DescriptorEmbedder())
