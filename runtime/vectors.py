"""What is done with embeddings after the model: L2 normalization and similarity.

Pure numpy. The graph usually normalizes already; these are for callers that ask for it (TEI's
"normalize") and for comparing vectors.
"""

from __future__ import annotations

import numpy as np

# Below this norm a vector counts as zero: dividing by it would only amplify noise (an empty
# text on some models), so it stays zero instead, as sentence-transformers' Normalize does.
EPS = 1e-12


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32 [n, dim]; 1-D input counts as one row)."""
    v = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), EPS)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity matrix [len(a), len(b)] (1-D inputs count as one row)."""
    return l2_normalize(a) @ l2_normalize(b).T


def similarity(a: np.ndarray, b: np.ndarray, fn: str = "cosine") -> np.ndarray:
    """sentence-transformers' similarity matrix [len(a), len(b)] by its similarity_fn_name:
    cosine, dot (product), euclidean and manhattan (both as negative distances: higher is
    more similar)."""
    x = np.atleast_2d(np.asarray(a, dtype=np.float32))
    y = np.atleast_2d(np.asarray(b, dtype=np.float32))
    if fn == "cosine":
        return cosine_similarity(x, y)
    if fn == "dot":
        return x @ y.T
    if fn == "euclidean":
        squared = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * (x @ y.T)
        return -np.sqrt(np.maximum(squared, 0.0))
    if fn == "manhattan":
        # row by row: one [len(b), dim] difference at a time, not [len(a), len(b), dim]
        out = np.empty((len(x), len(y)), dtype=np.float32)
        for i, row in enumerate(x):
            out[i] = -np.abs(row - y).sum(1)
        return out
    raise ValueError(f"similarity function {fn!r} is not cosine, dot, euclidean or manhattan")
