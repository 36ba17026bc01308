"""embedrt: sentence embeddings from one fused ONNX graph, without torch.

    from embedrt import Encoder
    enc = Encoder.load("artifacts/all-MiniLM-L6-v2")
    enc.encode(["a", "b"])          # float32 (2, 384), unit norm

The public surface is what this module lists. `embedrt.export` (extra 'export') turns a
sentence-transformers folder into an artifact directory.
"""

from .batching import BatchPlan
from .encoder import EncodeStats, Encoder, EncoderInfo
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
    "Variant",
    "load_manifest",
]
