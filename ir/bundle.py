"""The bundle: one directory every stage reads and writes.

Layout::

    bundle/
      manifest.json         {"schema": 1, "model": str, "layers": [layer record, ...]}
      weights.safetensors   "{layer}.{key}" -> tensor (see ``ir.layer`` for the keys)

Loading never runs code (JSON and safetensors only), validates every field and raises
:class:`~ir.layer.BundleError` whose message names the layer and the field. Saving writes a
temporary directory beside the target and renames it into place, so a reader never sees a
half-written bundle. The same bundle saves to byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from ir.layer import BundleError, Layer, check_layer_name
from ir.schemes import SchemeError, scheme_from_json

__all__ = ["Bundle", "SCHEMA_VERSION", "MANIFEST", "WEIGHTS"]

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
_TENSOR_KEYS = ("weight", "mask", "qweight", "bias", "weight_ih", "weight_hh", "mask_ih",
                "mask_hh", "qweight_ih", "qweight_hh", "bias_ih", "bias_hh")
_LAYER_KEYS = ("name", "op", "shape", "scheme", "quant", "stats", "break_even")


@dataclass(frozen=True, eq=False)
class Bundle:
    """A compressed model: its name and its layers, in execution order.

    Parameters
    ----------
    model : str
        The model's name (free text).
    layers : tuple of Layer
        Layer names must be unique.
    """

    model: str
    layers: tuple[Layer, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.model, str):
            raise BundleError(f"field 'model': must be a string, not {type(self.model).__name__}")
        layers = tuple(self.layers)
        seen: set[str] = set()
        for layer in layers:
            if not isinstance(layer, Layer):
                raise BundleError(f"layers must be Layer records, not {type(layer).__name__}")
            if layer.name in seen:
                raise BundleError(f"layer {layer.name!r}: field 'name': duplicate layer name")
            seen.add(layer.name)
        object.__setattr__(self, "layers", layers)

    def layer(self, name: str) -> Layer:
        """The layer called ``name``; :class:`KeyError` listing the names if there is none."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r}; layers: {', '.join(x.name for x in self.layers)}")

    def with_layer(self, layer: Layer) -> Bundle:
        """A copy with the layer of the same name replaced by ``layer``."""
        self.layer(layer.name)
        return replace(self, layers=tuple(layer if x.name == layer.name else x
                                          for x in self.layers))

    def manifest(self) -> dict[str, Any]:
        """The manifest as a JSON-ready dict."""
        return {"schema": SCHEMA_VERSION, "model": self.model,
                "layers": [layer.to_json() for layer in self.layers]}

    # -- saving ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the bundle to directory ``path`` atomically (replacing an existing bundle)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            tensors = {f"{layer.name}.{key}": np.ascontiguousarray(arr)
                       for layer in self.layers for key, arr in sorted(layer.tensors.items())}
            save_file(dict(sorted(tensors.items())), str(tmp / WEIGHTS))
            text = json.dumps(self.manifest(), indent=2) + "\n"
            (tmp / MANIFEST).write_text(text, encoding="utf-8")
            mask = os.umask(0o022)
            os.umask(mask)
            os.chmod(tmp / WEIGHTS, 0o666 & ~mask)   # safetensors leaves 0600: unreadable to others
            os.chmod(tmp, 0o777 & ~mask)             # mkdtemp's 0700 likewise
            old = None
            problem = self.target_problem(target)
            if problem is not None:
                raise BundleError(problem)
            if target.exists():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, old)
            os.replace(tmp, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    @staticmethod
    def target_problem(path: str | os.PathLike[str]) -> str | None:
        """Why :meth:`save` would refuse to write a bundle at ``path``, or None: ``path`` must
        not exist, or be an empty folder or a bundle (which is replaced). For commands that
        check their outputs before a long run."""
        target = Path(path)
        if not (target.exists() or target.is_symlink()):
            return None
        if not target.is_dir():
            return f"{target}: exists and is not a bundle folder; not overwriting it"
        if not (target / MANIFEST).exists() and any(target.iterdir()):
            return f"{target}: exists and is not a bundle; not overwriting it"
        return None

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Bundle:
        """Read and validate the bundle in directory ``path``.

        Raises
        ------
        BundleError
            Naming the file, or the layer and the field, and what is allowed.
        """
        root = Path(path)
        if not root.is_dir():
            raise BundleError(f"{root}: not a bundle directory")
        manifest_path, weights_path = root / MANIFEST, root / WEIGHTS
        if not manifest_path.is_file():
            raise BundleError(f"{root}: {MANIFEST} is missing")
        if not weights_path.is_file():
            raise BundleError(f"{root}: {WEIGHTS} is missing")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except RecursionError:
            raise BundleError(f"{root}: {MANIFEST} is not valid JSON: nested too deeply") from None
        except (ValueError, UnicodeDecodeError) as exc:   # JSONDecodeError, a 5,000-digit int
            raise BundleError(f"{root}: {MANIFEST} is not valid JSON: {exc}") from None
        odd = _unreadable_dtype(weights_path)
        if odd is not None:
            raise BundleError(f"{root}: {WEIGHTS}: tensor {odd[0]!r} is {odd[1]}, which this "
                              "format does not hold; weights are float32 (convert bfloat16 "
                              "weights with .float() before exporting)")
        try:
            tensors = load_file(str(weights_path))
        except (SafetensorError, OSError, ValueError, TypeError) as exc:
            raise BundleError(f"{root}: {WEIGHTS} is not a valid safetensors file: {exc}") from None
        try:
            return cls.from_manifest(manifest, tensors)
        except BundleError as exc:
            raise BundleError(f"{root}: {exc}") from None

    @classmethod
    def from_manifest(cls, manifest: Any, tensors: dict[str, np.ndarray]) -> Bundle:
        """Build a bundle from a parsed manifest and a flat ``{"layer.key": array}`` dict."""
        if not isinstance(manifest, dict):
            raise BundleError("manifest: must be a JSON object")
        schema = manifest.get("schema")
        if schema != SCHEMA_VERSION:
            raise BundleError(f"manifest: field 'schema': unknown schema version {schema!r}; "
                              f"this version reads schema {SCHEMA_VERSION}")
        extra = sorted(set(manifest) - {"schema", "model", "layers"})
        if extra:
            raise BundleError(f"manifest: unknown field {extra[0]!r}; allowed: schema, model, "
                              "layers")
        model = manifest.get("model")
        if not isinstance(model, str):
            raise BundleError(f"manifest: field 'model': must be a string, not {model!r}")
        records = manifest.get("layers")
        if not isinstance(records, list):
            raise BundleError("manifest: field 'layers': must be a list of layer records")
        remaining = dict(tensors)
        layers, seen = [], set()
        for index, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise BundleError(f"manifest: layers[{index}]: must be an object")
            name = check_layer_name(rec.get("name"))
            if name in seen:
                raise BundleError(f"layer {name!r}: field 'name': duplicate layer name")
            seen.add(name)
            layers.append(_layer_from_record(name, rec, remaining))
        if remaining:
            first = sorted(remaining)[0]
            raise BundleError(f"{WEIGHTS}: tensor {first!r} belongs to no layer in the manifest")
        return cls(model=model, layers=tuple(layers))


#: safetensors dtypes that numpy reads (``load_file`` fails on the others, e.g. BF16 and F8).
_NUMPY_DTYPES = frozenset({"BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64", "F16",
                           "F32", "F64"})


def _unreadable_dtype(path: Path) -> tuple[str, str] | None:
    """The first ``(tensor, dtype)`` in a safetensors file's header that numpy cannot read, or
    None (also when the header itself is unreadable: ``load_file`` then says why)."""
    try:
        with path.open("rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size <= 100_000_000:
                return None
            header = json.loads(f.read(size))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(header, dict):
        return None
    for name, info in header.items():
        if name != "__metadata__" and isinstance(info, dict) and \
                info.get("dtype") not in _NUMPY_DTYPES:
            return name, str(info.get("dtype"))
    return None


def _layer_from_record(name: str, rec: dict[str, Any], remaining: dict[str, np.ndarray]) -> Layer:
    for key in ("op", "shape", "scheme", "quant"):
        if key not in rec:
            raise BundleError(f"layer {name!r}: field {key!r}: is missing")
    extra = sorted(set(rec) - set(_LAYER_KEYS))
    if extra:
        raise BundleError(f"layer {name!r}: unknown field {extra[0]!r}; allowed: "
                          f"{', '.join(_LAYER_KEYS)}")
    try:
        scheme = scheme_from_json(rec["scheme"])
    except SchemeError as exc:
        raise BundleError(f"layer {name!r}: field 'scheme': {exc}") from None
    mine = {key: remaining.pop(f"{name}.{key}") for key in _TENSOR_KEYS
            if f"{name}.{key}" in remaining}
    layer = Layer(name=name, op=rec["op"], shape=rec["shape"], scheme=scheme,
                  quant=rec["quant"], tensors=mine, break_even=rec.get("break_even"))
    recorded = rec.get("stats")
    if recorded is not None:
        computed = layer.stats.to_json()
        if not isinstance(recorded, dict):
            raise BundleError(f"layer {name!r}: field 'stats': must be an object")
        for key in ("nnz", "numel", "weight_bits", "index_bits"):
            if key in recorded and recorded[key] != computed[key]:
                raise BundleError(f"layer {name!r}: field 'stats.{key}': recorded "
                                  f"{recorded[key]!r} but the tensors give {computed[key]!r}")
    return layer
