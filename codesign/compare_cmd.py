"""``codesign compare``: an RNN, linear or conv2d layer on the FPGA engines and on a mobile ARM
core, side by side.

For each ``--layer`` of ``--bundle``: an lstm or gru layer runs on the RTL of the cell engine
with dense gates and, for a BCR layer, with BCR gates, sized to the layer, for ``--steps``
steps; a linear layer runs on the dense engine and its sparse engine (BCR for a BCR layer,
unstructured for any other sparse scheme), sized to it, for ``--vectors`` random input vectors;
a conv2d layer runs on the dense engine (im2col products) and its sparse engine (the pattern
engine's whole convolution for a pattern layer), for ``--maps`` random feature maps of
``--image`` (default: the input size the zoo model of the bundle's name gives the layer, else
16x16); everything checked against ``ir.golden``. ``--slices N`` builds every BCR engine (the
BCR gates of a BCR-pruned RNN layer, the BCR engine of a BCR-pruned linear or conv2d layer)
with ``N`` slices of ``--lanes`` lanes each, its memories sized for its largest slice; it is
refused when no chosen layer runs on a BCR engine. The same Verilog is synthesised and placed on
``--device`` for its Fmax (``codesign synth``'s flow; ``--fmax`` gives it instead); the layer's
int8 kernels for aarch64 are checked against ``ir.golden`` and against the RTL's outputs under
qemu, and costed with llvm-mca. Prints each side's time (FPGA: microseconds per step, vector
or feature map at Fmax; ARM: modelled cycles per step, vector or feature map, a band) and the ARM clock at which each
kernel matches each engine (see :mod:`codesign.compare`). Writes ``OUT/<layer>/compare.json``,
``compare.csv`` and the synthesis reports in ``OUT/<layer>/synth/``. Exits 1 when a check
fails.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import click

from codesign.options import (
    FIRST_SEED,
    FIRST_SEED_HELP,
    LANES,
    MAX_SLICES,
    OUT_DIR,
    PNR_TIMEOUT,
    PNR_TIMEOUT_HELP,
    ROUTER_HELP,
    ROUTERS,
    SEED,
    SLICES,
)
from synth_reports.tools import TIMEOUT_S

__all__ = ["compare", "parse_fmax", "layer_folder_problem", "write_layer", "count_problem",
           "slices_problem", "MARKER"]

PLACED_DEVICES = ("up5k", "hx8k", "ecp5-25k", "ecp5-85k")
MAX_STEPS = 64
#: Most input vectors of a linear layer (each runs once per ARM kernel under qemu).
MAX_COMPARE_VECTORS = 64
#: Most input feature maps of a conv2d layer, and the largest side of one (every output
#: position is one im2col product in RTL on the matrix engines).
MAX_COMPARE_MAPS = 16
MAX_COMPARE_IMAGE_SIDE = 64
#: Most slices of a BCR engine: :data:`codesign.options.MAX_SLICES`, which mirrors
#: :data:`hw.bcr.MAX_SLICES` (not imported, so that the command line starts without amaranth;
#: a test checks they agree).
MAX_COMPARE_SLICES = MAX_SLICES


def _user_error(message: str) -> Exception:
    from codesign.cli import UserError  # imported here: codesign.cli imports this module

    return UserError(" ".join(str(message).split()))


def parse_fmax(text: str | None) -> dict[str, float] | None:
    """``--fmax DENSE[,SPARSE]``: ``{"dense": MHz, "sparse": MHz}``, the dense engine's Fmax
    and the sparse one's (default the dense one's): the BCR-gated cell engine of an RNN layer,
    the BCR or unstructured engine of a linear one, the pattern (or matrix) engine of a conv2d
    one. Positive finite MHz; ``ValueError`` naming the format."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if not 1 <= len(parts) <= 2 or len(values) != len(parts) or not all(
            v > 0 and math.isfinite(v) for v in values):
        raise ValueError(f"--fmax must be DENSE or DENSE,SPARSE: positive MHz values of the "
                         f"dense engine and the sparse one (BCR gates, or a linear or conv2d "
                         f"layer's BCR, unstructured or pattern engine), like 32 or 32,30, not "
                         f"{text!r}")
    return {"dense": values[0], "sparse": values[-1]}


def _synth_function(device: str, dest: Path, freq: float, seeds: int, router: str = "router1",
                    pnr_timeout_s: float = TIMEOUT_S, first_seed: int = 1):
    from codesign.cli import UserError
    from codesign.synth_cmd import run_synth

    def synth(gates: str, verilog: str):
        try:
            report, path = run_synth(Path(verilog), device, dest, target_mhz=freq, seeds=seeds,
                                     router=router, pnr_timeout_s=pnr_timeout_s,
                                     first_seed=first_seed)
        except UserError as exc:        # does not fit, or a tool failed: a row says so
            return None, "", None, None, exc.message
        spread = report.seed_text()
        if router != "router1":
            spread += f", {router}"
        return (report.fmax_mhz, f"nextpnr on {device}, {spread}", asdict(report.resources),
                str(path), "")

    return synth


#: A file in every layer folder ``codesign compare`` writes; only such a folder is replaced.
MARKER = ".codesign-compare"


def layer_folder_problem(dest: Path) -> str | None:
    """Why ``dest`` may not be replaced by a layer's comparison, or None: it must not exist, or
    be an empty folder or one that ``codesign compare`` wrote (it holds :data:`MARKER`)."""
    if not (dest.exists() or dest.is_symlink()):
        return None
    if dest.is_symlink() or not dest.is_dir() or (
            not (dest / MARKER).is_file() and any(dest.iterdir())):
        return (f"{dest}: exists and is not a layer folder of codesign compare (no {MARKER} in "
                "it); not replacing it")
    return None


@contextlib.contextmanager
def _layer_folder(dest: Path):
    """A marked temporary folder beside ``dest``, put in its place when the block ends without
    an exception (an earlier run's folder replaced), removed when it raises."""
    from codesign.synth_cmd import _swap_folder

    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)            # mkdtemp's 0700 would hide the results from others
    (tmp / MARKER).write_text("written by codesign compare; replaced by its next run\n")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_folder(tmp, dest)


def write_layer(cmp, work: Path, dest: Path) -> None:
    """``compare.json`` and ``compare.csv`` of one layer into ``work`` (which becomes ``dest``),
    with each engine's Verilog and sidecar copied to ``verilog/`` and every path in the JSON
    relative to the layer folder, so the folder stands alone and reruns are byte-identical."""
    from codesign.compare import comparison_frame

    data = cmp.to_json()
    for f in data["fpga"]:
        src = Path(f["verilog"])
        (work / "verilog").mkdir(exist_ok=True)
        for path in (src, src.with_suffix(".json")):
            shutil.copyfile(path, work / "verilog" / path.name)
        f["verilog"] = f"verilog/{src.name}"
        f["note"] = f["note"].replace(str(work), str(dest))
        if f.get("report"):
            f["report"] = Path(f["report"]).resolve().relative_to(work.resolve()).as_posix()
    comparison_frame(cmp).to_csv(work / "compare.csv", index=False)
    (work / "compare.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def count_problem(ops: list[str], given: list[str]) -> str | None:
    """Why the options ``given`` on the command line (``--steps``, ``--vectors``, ``--maps``,
    ``--image``) mean nothing for layers of ``ops``, or None: ``--steps`` needs an lstm/gru
    layer, ``--vectors`` a linear one, ``--maps`` and ``--image`` a conv2d one."""
    needs = {"--steps": (("lstm", "gru"), "is the sequence length of lstm and gru layers"),
             "--vectors": (("linear",), "is the number of random input vectors of linear "
                                        "layers"),
             "--maps": (("conv2d",), "is the number of random input feature maps of conv2d "
                                     "layers"),
             "--image": (("conv2d",), "is the input size of conv2d layers")}
    family = {"lstm": "lstm and gru", "gru": "lstm and gru", "linear": "linear",
              "conv2d": "conv2d"}
    hint = {"lstm and gru": "--steps (the sequence length)",
            "linear": "--vectors (random input vectors)",
            "conv2d": "--maps (random feature maps) and --image"}
    for option in ("--steps", "--vectors", "--maps", "--image"):
        ops_for, what = needs[option]
        if option in given and not any(op in ops_for for op in ops):
            kinds = list(dict.fromkeys(family[op] for op in ops))
            return (f"{option} {what}; for {' and '.join(kinds)} layers give "
                    f"{'; '.join(hint[k] for k in kinds)}")
    return None


def bcr_engine_layers(layers: list) -> list[str]:
    """The names of the ``layers`` (bundle layers compare runs) that run on a BCR engine: BCR
    gates of an lstm/gru layer, the BCR engine of a linear or conv2d layer."""
    from codesign.compare import conv_engines, fpga_engines, linear_engines

    engines = {"linear": linear_engines, "conv2d": conv_engines}
    return [lay.name for lay in layers if "bcr" in engines.get(lay.op, fpga_engines)(lay)]


def slices_problem(layers: list, slices: int) -> str | None:
    """Why ``--slices`` (``slices`` > 1) means nothing for ``layers``, or None: it slices the
    BCR engine, which only BCR-pruned layers run on."""
    if slices == 1 or bcr_engine_layers(layers):
        return None
    schemes = ", ".join(f"{lay.name} {lay.scheme.kind}" for lay in layers)
    return (f"--slices {slices} splits a BCR engine into pipelines, and none of the layers "
            f"runs on one ({schemes}); give --slices to BCR-pruned layers only")


def _run_layer(layer, *, lanes: int, steps: int, vectors: int, maps: int,
               image: tuple[int, int], **kw):
    """:func:`codesign.compare.compare_linear_layer` (``vectors``) for a linear layer,
    :func:`codesign.compare.compare_conv_layer` (``maps`` of ``image``) for a conv2d layer,
    else :func:`codesign.compare.compare_rnn_layer` (``steps``)."""
    from codesign.compare import compare_conv_layer, compare_linear_layer, compare_rnn_layer

    if layer.op == "linear":
        return compare_linear_layer(layer, lanes=lanes, vectors=vectors, **kw)
    if layer.op == "conv2d":
        return compare_conv_layer(layer, lanes=lanes, maps=maps, image=image, **kw)
    return compare_rnn_layer(layer, lanes=lanes, steps=steps, **kw)


def _conv_image(text: str) -> tuple[int, int]:
    """``--image 16`` or ``16x12`` for compare: positive sides of at most
    :data:`MAX_COMPARE_IMAGE_SIDE`."""
    from codesign.mobile_cmd import _image

    pair = _image(text)
    if max(pair) > MAX_COMPARE_IMAGE_SIDE:
        raise _user_error(f"--image sides must be at most {MAX_COMPARE_IMAGE_SIDE} for compare "
                          f"(every output position runs in RTL), not {text!r}")
    return pair


def layer_images(bundle, names: list[str], image: tuple[int, int] | None
                 ) -> dict[str, tuple[int, int]]:
    """The input size of each conv2d layer of ``names``: ``image`` when given, else the size
    the zoo model named as the bundle's model gives it (one forward pass), else 16x16."""
    convs = [n for n in names if bundle.layer(n).op == "conv2d"]
    if image is not None or not convs:
        return {n: image or (16, 16) for n in convs}
    from pruning.zoo import MODELS

    zoo: dict[str, tuple[int, int]] = {}
    if bundle.model in MODELS:
        from codesign.sweep import _zoo_images
        from pruning.zoo import build

        zoo = _zoo_images(build(bundle.model))
    return {n: zoo.get(n, (16, 16)) for n in convs}


@click.command()
@click.option("--bundle", type=click.Path(path_type=Path), required=True,
              help="Bundle folder (manifest.json + weights.safetensors).")
@click.option("--layer", "layer_names", multiple=True, required=True,
              help="An lstm, gru, linear or conv2d layer (repeatable).")
@click.option("--device", type=click.Choice(PLACED_DEVICES), default="ecp5-85k",
              show_default=True, help="The FPGA part the engines are placed on.")
@click.option("--lanes", type=LANES, default=8, show_default=True,
              help="Engine lanes (lstm/gru: a multiple of 4).")
@click.option("--slices", type=SLICES, default=1, show_default=True,
              help="BCR engines (BCR-pruned layers): pipelines of --lanes lanes each over "
                   "disjoint block rows.")
@click.option("--steps", type=click.IntRange(1, MAX_STEPS), default=4, show_default=True,
              help="lstm/gru: steps of the random input sequence.")
@click.option("--vectors", type=click.IntRange(1, MAX_COMPARE_VECTORS), default=4,
              show_default=True, help="linear: random int8 input vectors.")
@click.option("--maps", type=click.IntRange(1, MAX_COMPARE_MAPS), default=1, show_default=True,
              help="conv2d: random int8 input feature maps.")
@click.option("--image", "image_text", default=None,
              help="conv2d: input size, 16 or 16x12 [default: the zoo model's, else 16x16].")
@click.option("--seeds", type=click.IntRange(1, 20), default=1, show_default=True,
              help="Placement seeds per engine (1..N, or from --first-seed); Fmax is their "
                   "median.")
@click.option("--first-seed", type=FIRST_SEED, default=1, show_default=True,
              help=FIRST_SEED_HELP)
@click.option("--freq", type=click.FloatRange(0, 1000, min_open=True), default=48.0,
              show_default=True, help="nextpnr's target frequency in MHz.")
@click.option("--router", type=click.Choice(ROUTERS), default="router1", show_default=True,
              help=ROUTER_HELP)
@click.option("--pnr-timeout", type=PNR_TIMEOUT, default=TIMEOUT_S, show_default=True,
              help=PNR_TIMEOUT_HELP)
@click.option("--fmax", "fmax_text", default=None,
              help="DENSE[,SPARSE]: the dense and the sparse (BCR, unstructured or "
                   "pattern) engine's Fmax in MHz, instead of synthesising them.")
@click.option("--simulator", type=click.Choice(["verilator", "icarus"]), default="verilator",
              show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="The random inputs (sequence or vectors).")
@click.option("--out", type=OUT_DIR, required=True, help="Output folder.")
def compare(bundle: Path, layer_names: tuple[str, ...], device: str, lanes: int, slices: int,
            steps: int, vectors: int, maps: int, image_text: str | None, seeds: int,
            first_seed: int, freq: float, router: str, pnr_timeout: int, fmax_text: str | None, simulator: str,
            seed: int, out: Path) -> None:
    """Compare an RNN, linear or conv2d layer on the FPGA engines (RTL + Fmax) and on ARM
    (qemu + llvm-mca)."""
    from codesign.compare import check_compare_layer, format_comparison
    from codesign.mobile_cmd import load_bundle
    from mobile.build import BuildError
    from mobile.run import folder_names
    from mobile.toolchain import missing_tools
    from sim.runner import SimulationError

    if not math.isfinite(freq):
        raise _user_error(f"--freq must be a finite number of MHz above 0 and at most 1000, "
                          f"not {freq}")
    try:
        fmax = parse_fmax(fmax_text)
    except ValueError as exc:
        raise _user_error(str(exc)) from None
    source = click.get_current_context().get_parameter_source
    given_counts = [f"--{p}" for p in ("steps", "vectors", "maps")
                    if source(p) == click.core.ParameterSource.COMMANDLINE]
    if image_text is not None:
        given_counts.append("--image")
    image = None if image_text is None else _conv_image(image_text)
    if fmax is not None:
        given = ["--" + p.replace("_", "-") for p in ("device", "seeds", "first_seed", "freq",
                                                      "router", "pnr_timeout")
                 if source(p) == click.core.ParameterSource.COMMANDLINE]
        if given:
            raise _user_error(f"{', '.join(given)} place the engines; with --fmax nothing is "
                              "placed (drop one or the other)")
    b = load_bundle(bundle)
    names = [lay.name for lay in b.layers]
    wanted = list(dict.fromkeys(layer_names))
    folders = folder_names(names)
    for name in wanted:
        if name not in names:
            raise _user_error(f"no layer {name!r} in {bundle}; layers: {', '.join(names)}")
    problem = (count_problem([b.layer(name).op for name in wanted], given_counts)
               or slices_problem([b.layer(name) for name in wanted], slices))
    if problem is not None:
        raise _user_error(problem)
    images = layer_images(b, wanted, image)
    for name in wanted:
        try:
            check_compare_layer(b.layer(name), lanes, image=images.get(name), slices=slices)
        except ValueError as exc:
            raise _user_error(str(exc)) from None
        problem = layer_folder_problem(out / folders[name])
        if problem is not None:
            raise _user_error(problem)
    missing = missing_tools()
    if missing:
        raise _user_error(f"the ARM side needs {', '.join(missing)} (codesign doctor "
                          "--install installs them)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _user_error(f"--out {out}: {exc.strerror or exc}") from None
    ok = True
    for name in wanted:
        dest = out / folders[name]
        click.echo(f"layer {name}:")
        with _layer_folder(dest) as work:
            synth = None if fmax is not None else _synth_function(device, work / "synth", freq,
                                                                  seeds, router, pnr_timeout,
                                                                  first_seed)
            try:
                cmp = _run_layer(b.layer(name), lanes=lanes, steps=steps, vectors=vectors,
                                 maps=maps, image=images.get(name, (16, 16)), seed=seed,
                                 slices=slices, simulator=simulator, synth=synth, fmax=fmax,
                                 device=device if fmax is None else None, echo=click.echo)
            except (ValueError, BuildError, SimulationError) as exc:
                raise _user_error(f"layer {name!r}: {str(exc).splitlines()[0]}") from None
            for line in format_comparison(cmp):
                click.echo(line)
            write_layer(cmp, work, dest)
        ok &= cmp.ok
    click.echo(f"wrote {out}")
    if not ok:
        click.echo("codesign: error: an engine or kernel does not match the golden model",
                   err=True)
        sys.exit(1)
