"""embedrt: sentence embeddings from one fused ONNX graph, without torch.

    from embedrt import Encoder
    enc = Encoder.load("artifacts/all-MiniLM-L6-v2")
    enc.encode(["a", "b"])          # float32 (2, 384), unit norm

The public surface is what this module lists. The surfaces are subpackages, each behind its
extra: `embedrt.serve` (HTTP service), `embedrt.jobs` (batch jobs over files), `embedrt.ray`
(Ray Data), and `embedrt.export` (sentence-transformers folder -> artifact directory, with its
training part in `embedrt.export.train`). docs/architecture.md draws the whole.
"""

from .batching import BatchPlan
from .encoder import Encoder, EncoderInfo
from .errors import (
    ConfigError,
    EmbedrtError,
    InputError,
    MissingExtraError,
    ModelLoadError,
    OverloadedError,
    ProviderError,
)
from .manifest import Manifest, Variant, load_manifest
from .runner import EncodeStats, Runner

__version__ = "0.1.0"

__all__ = [
    "BatchPlan",
    "ConfigError",
    "EmbedrtError",
    "EncodeStats",
    "Encoder",
    "EncoderInfo",
    "InputError",
    "Manifest",
    "MissingExtraError",
    "ModelLoadError",
    "OverloadedError",
    "ProviderError",
    "Runner",
    "Variant",
    "load_manifest",
]
