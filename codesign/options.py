"""Click parameter types shared by the commands, checked when the command line is parsed.

:class:`OutDir` (``OUT_DIR``): an output folder. The path, and every ancestor of it that exists,
must be a folder (a folder that does not exist yet is created by the command). A file in the way
is a user error naming it, not a ``FileExistsError`` traceback after minutes of work.

:class:`FiniteFloatRange`: ``click.FloatRange`` without NaN and infinities, which pass its
bounds checks (every comparison with NaN is false) and reached the optimizers as tracebacks.

:func:`int_arg` and :func:`float_arg`: the same checks as ``type=`` callables for the
benchmarks' ``argparse`` command lines, so a bad number is one ``error: argument --x: ...`` line
and exit status 2 when the line is parsed, not a traceback minutes into a run.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from synth_reports.pnr import ROUTERS

__all__ = ["OutDir", "OUT_DIR", "fmax_pair_arg", "FiniteFloatRange", "folder_problem", "file_problem", "outputs_problem",
           "int_arg",
           "float_arg", "list_arg", "names_arg",
           "block_arg", "whole_number", "positive_pair", "SEED", "MAX_SEED", "LANES", "MAX_LANES", "MAX_VECTORS",
           "SLICES", "MAX_SLICES", "ROUTERS", "ROUTER_HELP", "PNR_TIMEOUT", "PNR_TIMEOUT_HELP",
           "SEED_ARG", "LEARNING_RATE", "MAX_LR", "LR_ARG", "parse_quick"]


class OutDir(click.Path):
    """A ``click.Path`` for an output folder that may not exist yet; converts to ``Path``."""

    name = "folder"

    def __init__(self) -> None:
        super().__init__(path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():   # Path("") is the current folder
            self.fail("must not be empty (give . for the current folder)", param, ctx)
        path = Path(super().convert(value, param, ctx))
        problem = folder_problem(path)
        if problem is not None:
            self.fail(problem, param, ctx)
        return path


def folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be (or become) a folder, or None: the first existing one of ``path``
    and its ancestors must be a folder. Also for the benchmarks' output options."""
    path = Path(path)
    for ancestor in (path, *path.parents):
        if ancestor.exists() or ancestor.is_symlink():
            if ancestor.is_dir():
                return None
            where = "is" if ancestor == path else f"cannot hold folder {str(path)!r}: it is"
            what = "a file" if ancestor.exists() else "a broken link"
            return f"{str(ancestor)!r} {where} {what}, not a folder"
    return None


OUT_DIR = OutDir()


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be written as a file, or None (its folder as :func:`folder_problem`).

    For output options checked before a long run, not after it."""
    path = Path(path)
    if path.is_dir():
        return f"{str(path)!r} is a folder, not a file"
    return folder_problem(path.parent)


def outputs_problem(out: Path, files: Sequence[str] = (), bundles: Sequence[str] = (),
                    folders: Sequence[str] = ()) -> str | None:
    """Why a command could not write its outputs under folder ``out``, or None: each of
    ``files`` (names relative to ``out``) must be writable as a file (:func:`file_problem`),
    each of ``bundles`` absent, an empty folder or a bundle (:meth:`ir.Bundle.target_problem`),
    each of ``folders`` a folder or able to become one (:func:`folder_problem`).

    Checked before the work, so that a folder in the way of ``summary.json`` is not found after
    a run of minutes, with some outputs written and others not."""
    from ir import Bundle  # numpy: imported when a command runs, not at start-up

    problem = folder_problem(out)
    for name in files:
        problem = problem or file_problem(Path(out) / name)
    for name in folders:
        problem = problem or folder_problem(Path(out) / name)
    for name in bundles:
        problem = problem or Bundle.target_problem(Path(out) / name)
    return problem


#: Largest random seed a command takes: numpy's generators refuse negative seeds and torch's
#: refuse 2**64 and above (an offset is added to a seed for each phase), so seeds are 32-bit.
MAX_SEED = 2**32 - 1

def parse_quick(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                quick: dict[str, Any]) -> argparse.Namespace:
    """``parser.parse_args(argv)``; with ``--quick`` (``args.quick``) each option of ``quick``
    (by ``dest``) that the command line does not give takes its quick value. A benchmark's smoke
    run then keeps what the user asked for (``--quick --seeds 2`` ran one seed)."""
    unset = object()
    originals = {key: parser.get_default(key) for key in quick}
    parser.set_defaults(**dict.fromkeys(quick, unset))
    try:
        probe = parser.parse_args(argv)
    finally:
        parser.set_defaults(**originals)
    args = parser.parse_args(argv)
    if getattr(args, "quick", False):
        for key, value in quick.items():
            if getattr(probe, key) is unset:
                setattr(args, key, value)
    return args


#: Most MAC lanes an engine is built with, in every command (a larger value was built, or
#: tried: 2**32 lanes took 20 GB before failing).
MAX_LANES = 64

#: The ``--lanes`` option type: an integer from 1 to MAX_LANES.
LANES = click.IntRange(1, MAX_LANES)

#: Most slices (pipelines of ``--lanes`` lanes) of a BCR engine in every command:
#: :data:`hw.bcr.MAX_SLICES`, not imported, so that the command line starts without amaranth
#: (a test checks they agree).
MAX_SLICES = 16

#: The ``--slices`` option type: an integer from 1 to MAX_SLICES.
SLICES = click.IntRange(1, MAX_SLICES)

#: The ``--router`` option's help (its choices are :data:`synth_reports.pnr.ROUTERS`).
ROUTER_HELP = ("nextpnr's router. router2 routes congested engines (the RNN cells with BCR "
               "gates) that router1 takes far longer on, or cannot finish; where both finish, "
               "its Fmax is 4-9% lower.")
#: The ``--pnr-timeout`` option: seconds one nextpnr run may take (default
#: :data:`synth_reports.tools.TIMEOUT_S`).
PNR_TIMEOUT = click.IntRange(1, 86400)
PNR_TIMEOUT_HELP = ("Seconds one nextpnr run may take; a seed that runs longer is stopped and "
                    "the next seed runs (Fmax is over the seeds that finished).")

#: Largest nextpnr placement seed (nextpnr reads ``--seed`` as a C ``int``).
MAX_PLACEMENT_SEED = 2**31 - 1
#: The ``--first-seed`` option type: the first of ``--seeds`` consecutive placement seeds, 0 to
#: :data:`MAX_PLACEMENT_SEED` less the most seeds a command runs (20).
FIRST_SEED = click.IntRange(0, MAX_PLACEMENT_SEED - 19)
FIRST_SEED_HELP = ("The first placement seed: --seeds N runs seeds S..S+N-1 (to try other "
                   "seeds when the first ones are stopped at --pnr-timeout).")

#: Most random input vectors (or images, or sequence steps) one ``simulate`` runs.
MAX_VECTORS = 4096

#: The ``--seed`` option type of every command: an integer from 0 to MAX_SEED.
SEED = click.IntRange(0, MAX_SEED)


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses NaN and +-infinity."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):        # before the bounds, which +-inf may also break
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


#: Largest learning rate a command takes. Far above any useful rate, and low enough that the
#: optimizers' float32 steps cannot overflow (torch failed with a RuntimeError at 1e300);
#: a rate that makes training diverge is reported as such (``pruning.errors.TrainingDiverged``).
MAX_LR = 1e6

#: The ``--lr`` option type of the training commands: a number in (0, MAX_LR].
LEARNING_RATE = FiniteFloatRange(min=0, max=MAX_LR, min_open=True)


def int_arg(low: int, high: int | None = None) -> Callable[[str], int]:
    """An ``argparse`` ``type=`` for an integer in ``[low, high]`` (``high`` None: no bound).

    The callable raises ``argparse.ArgumentTypeError`` saying what is allowed and what was given.
    """
    allowed = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}")
        return value

    return convert


def float_arg(low: float, high: float = math.inf, *, low_open: bool = False,
              high_open: bool = False) -> Callable[[str], float]:
    """An ``argparse`` ``type=`` for a finite number between ``low`` and ``high``.

    ``low_open`` / ``high_open`` exclude the bound itself; an infinite bound means none. NaN and
    infinities are always refused. The callable raises ``argparse.ArgumentTypeError``.
    """
    if math.isinf(high):
        allowed = f"a finite number {'>' if low_open else '>='} {low:g}"
    else:
        allowed = (f"a finite number in {'(' if low_open else '['}{low:g}, {high:g}"
                   f"{')' if high_open else ']'}")

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = (math.isfinite(value) and (value > low if low_open else value >= low)
              and (value < high if high_open else value <= high))
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}")
        return value

    return convert


def list_arg(item: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    """An ``argparse`` ``type=`` for a non-empty comma-separated list, each entry converted by
    ``item`` (an :func:`int_arg` or :func:`float_arg`); an empty entry (``"1,,2"``) and a
    repeated one (``"85,85"``, which would run twice and weigh twice in a mean) are refused.
    """

    def convert(text: str) -> list[Any]:
        parts = [part.strip() for part in text.split(",")]
        if not all(parts):
            raise argparse.ArgumentTypeError(f"must be a comma-separated list without empty "
                                             f"entries, not {text!r}")
        try:
            values = [item(part) for part in parts]
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"every entry of the comma-separated list {exc}"
                                             ) from None
        if len(set(values)) != len(values):     # a repeated seed or ratio would run twice
            raise argparse.ArgumentTypeError(f"must not repeat an entry, not {text!r}")
        return values

    return convert


def names_arg(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    """An ``argparse`` ``type=`` for a comma-separated list of names from ``allowed``, in the
    order given, each once; unknown or repeated names and empty entries are refused."""

    def convert(text: str) -> list[str]:
        names = [part.strip() for part in text.split(",")]
        if not all(n in allowed for n in names) or len(set(names)) != len(names):
            raise argparse.ArgumentTypeError(f"must be a comma-separated list of distinct names "
                                             f"from {', '.join(allowed)}, not {text!r}")
        return names

    return convert


_WHOLE = re.compile(r"[0-9]{1,18}")


def whole_number(text: str) -> int | None:
    """``text`` (spaces around it allowed) as a non-negative integer written in ASCII digits, or
    None. ``str.isdigit`` is not enough: it also accepts ``"²"``, which ``int`` refuses, and
    ``int`` refuses numbers of more than 4,300 digits."""
    text = text.strip()
    return int(text) if _WHOLE.fullmatch(text) else None


def positive_pair(text: str, sep: str = "x") -> tuple[int, int] | None:
    """``"8x16"`` -> ``(8, 16)``: two positive integers joined by ``sep`` (case-insensitive),
    or None when ``text`` is not of that form."""
    parts = [whole_number(p) for p in text.lower().split(sep.lower())]
    if len(parts) != 2 or not all(parts):      # None or 0
        return None
    return parts[0], parts[1]


def block_arg(text: str) -> tuple[int, int]:
    """An ``argparse`` ``type=`` for a block size ``ROWSxCOLS`` of positive integers."""
    pair = positive_pair(text)
    if pair is None:
        raise argparse.ArgumentTypeError(f"must look like 8x16 (positive), not {text!r}")
    return pair


#: The benchmarks' ``argparse`` type for seeds: as :data:`SEED`, 0 to :data:`MAX_SEED`.
SEED_ARG = int_arg(0, MAX_SEED)

#: The benchmarks' ``argparse`` type for learning rates: as :data:`LEARNING_RATE`.
LR_ARG = float_arg(0, MAX_LR, low_open=True)


def fmax_pair_arg(text: str, engines: Sequence[str], lanes: Sequence[int] | None = None,
                  bits: Sequence[int] | None = None) -> tuple[float, float]:
    """``--fmax SPARSE,DENSE``: each a positive MHz value or the path of a `codesign synth`
    report (its median Fmax). One sparse Fmax speaks for one engine, so ``engines`` (the swept
    ones) must be one. A report must be of the right engine (DENSE the dense engine's, SPARSE
    the swept one's) and, when ``lanes``/``bits`` are given, built with those lanes and weight
    bits. Raises ``ValueError`` with the message for the user."""
    from synth_reports.flow import read_fmax

    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise ValueError(f"--fmax must be SPARSE,DENSE (two MHz values or `codesign synth` "
                         f"reports), not {text!r}")
    out, reports = [], []
    for part, role in zip(parts, ("sparse", "dense"), strict=True):
        try:
            value = float(part)
        except ValueError:
            value = None
        if value is not None:
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"--fmax must be two positive finite MHz values or "
                                 f"`codesign synth` reports SPARSE,DENSE, not {text!r}")
            out.append(value)
            continue
        try:
            value, params = read_fmax(part)
        except ValueError as exc:
            raise ValueError(f"--fmax: {exc}") from None
        out.append(value)
        reports.append((part, role, params))
    if len(engines) != 1:
        raise ValueError(f"--fmax gives one sparse engine's Fmax: run one --engine with it, not "
                         f"{', '.join(engines)}")
    for part, role, params in reports:
        engine = params.get("engine", "?")
        if role == "dense" and engine != "dense":
            raise ValueError(f"--fmax: {part} is a report of the {engine} engine; DENSE must "
                             "be the dense engine's")
        if role == "sparse" and engine not in engines:
            raise ValueError(f"--fmax: {part} is a report of the {engine} engine; SPARSE must "
                             f"be the swept engine's ({engines[0]})")
        for key, want, what in (("lanes", lanes, "lanes"), ("weight_bits", bits, "weight bits")):
            if want is not None and key in params and set(want) != {params[key]}:
                raise ValueError(f"--fmax: {part} is of an engine with {params[key]} {what}; "
                                 f"this run uses {', '.join(map(str, want))}")
    return out[0], out[1]
