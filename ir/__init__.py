"""The compressed-model bundle and everything every stage agrees on.

``ir`` owns the bundle format (``manifest.json`` + ``weights.safetensors``), the layer records,
the sparsity-scheme records and their structural checks, the sparse encoders (CSC/CSR with
relative indices, BCR compact, pattern/FKW) and the integer golden model every engine and every
generated kernel is checked against. It imports numpy and safetensors only: no torch, no amaranth.
"""

from ir.bundle import MANIFEST, SCHEMA_VERSION, WEIGHTS, Bundle
from ir.layer import (
    OPS,
    BundleError,
    ConvShape,
    Layer,
    LinearShape,
    QuantSpec,
    RNNShape,
    Stats,
)
from ir.schemes import (
    BCR,
    NM,
    SCHEME_KINDS,
    Column,
    Dense,
    Filter,
    Pattern,
    Scheme,
    SchemeError,
    Unstructured,
    scheme_from_json,
)

__all__ = [
    "Bundle", "BundleError", "Layer", "ConvShape", "LinearShape", "RNNShape", "QuantSpec",
    "Stats", "OPS", "SCHEMA_VERSION", "MANIFEST", "WEIGHTS", "Scheme", "SchemeError", "Dense",
    "Unstructured", "Filter", "Column", "NM", "BCR", "Pattern", "SCHEME_KINDS",
    "scheme_from_json",
]
