"""Emit an engine's Verilog once per parameter set, cached on disk and in the process.

Shared by :mod:`sim.dense`, :mod:`sim.bcr`, :mod:`sim.unstructured`, :mod:`sim.pattern` and
:mod:`sim.rnn`. A design lives in ``<cache>/verilog/<name>-<digest>/<name>.v`` (with its JSON
sidecar), where the digest covers the parameters and the source of the Amaranth modules that
describe the engine (plus the Amaranth version), so editing the hardware re-emits it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from sim.runner import default_cache_dir

__all__ = ["source_digest", "params_digest", "resolve_cache_dir", "emit_cached"]

_emitted: dict[tuple, Path] = {}


def source_digest(*modules: ModuleType) -> str:
    """SHA-256 (hex) of the Amaranth version and the source files of ``modules``, in order."""
    import amaranth

    h = hashlib.sha256(amaranth.__version__.encode())
    for mod in modules:
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()


def params_digest(params: Sequence[Any], modules: Sequence[ModuleType]) -> str:
    """16 hex digits keyed by ``params`` (JSON-serialisable) and :func:`source_digest`."""
    return hashlib.sha256(json.dumps([params, source_digest(*modules)]).encode()).hexdigest()[:16]


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir`` resolved, or :func:`sim.runner.default_cache_dir` when ``None``."""
    return Path(cache_dir).resolve() if cache_dir is not None else default_cache_dir()


def emit_cached(make_component: Callable[[], Any], name: str, params: Hashable,
                modules: Sequence[ModuleType], cache_dir: str | os.PathLike | None, *,
                digest: str | None = None) -> tuple[Path, str]:
    """Emit (or reuse) the Verilog of ``make_component()`` as top-level module ``name``.

    Parameters
    ----------
    make_component : callable
        Builds the Amaranth component; called only when the Verilog is not on disk yet.
    name : str
        Top-level module (and file) name.
    params : tuple
        The parameters the design depends on; with ``modules`` they key the output directory
        (:func:`params_digest`) and the in-process memo.
    modules : sequence of modules
        The Amaranth sources the design depends on.
    cache_dir : path or None
        The cache root (``None``: :func:`sim.runner.default_cache_dir`).
    digest : str, optional
        A precomputed directory digest, used instead of :func:`params_digest`; the in-process
        memo is then skipped (the digest already covers everything).

    Returns
    -------
    (pathlib.Path, str)
        The Verilog file under ``<cache>/verilog/<name>-<digest>/`` and ``name``.
    """
    from hw.emit import emit_verilog

    cache = resolve_cache_dir(cache_dir)
    memo_key = (str(cache), name, params)
    if digest is None:
        if memo_key in _emitted and _emitted[memo_key].is_file():
            return _emitted[memo_key], _emitted[memo_key].stem
        digest = params_digest(params, modules)
        memo = True
    else:
        memo = False
    out_dir = cache / "verilog" / f"{name}-{digest}"
    v_path = out_dir / f"{name}.v"
    if not (v_path.is_file() and v_path.with_suffix(".json").is_file()):
        v_path, _ = emit_verilog(make_component(), name, out_dir)
    if memo:
        _emitted[memo_key] = v_path
    return v_path, name
