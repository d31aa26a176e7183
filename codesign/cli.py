"""The ``codesign`` command line.

Every user error (bad option, unreadable bundle, unknown layer, missing tool) prints one line
``codesign: error: ...`` on stderr and exits 2, with no traceback. ``doctor`` exits 1 when a
required tool is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from codesign import __version__
from codesign.options import LANES, MAX_VECTORS, OUT_DIR, SEED, SLICES, positive_pair
from pruning.errors import TrainingDiverged

EXAMPLES = """
\b
Examples:
  codesign doctor                      check simulators and tools
  codesign doctor --install            install missing Debian tools (root)
  codesign demo --out out/demo         bundle -> Verilog -> simulation, end to end
  codesign inspect out/demo/bundle     per-layer table of a bundle
  codesign verilog --rows 64 --cols 64 --lanes 8 --out out/v
  codesign verilog --engine bcr --bundle out/demo/bundle --layer fc1 --out out/v
  codesign simulate --bundle out/demo/bundle --layer fc1 --engine bcr --lanes 4
  codesign synth out/v/dense_matvec.v --device up5k --out out/synth
  codesign simulate --bundle out/rnn/bundle --layer rnn --engine lstm --steps 8
  codesign prune --model lenet5 --scheme unstructured --ratio 85 --bits 3 --out out/lenet
  codesign loop --model tinycnn --engine unstructured --sparsity 0.3 --out out/loop
  codesign compare --bundle out/rnn/bundle --layer rnn --device ecp5-85k --out out/cmp
  codesign compare --bundle out/demo/bundle --layer fc1 --device ecp5-85k --lanes 8 --out out/cmp-fc1
"""


class UserError(click.ClickException):
    """A mistake in what the user asked for: one line on stderr, exit status 2."""

    exit_code = 2


@click.group(epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="codesign")
def cli() -> None:
    """Sparse-DNN hardware/software co-design: compress, generate Verilog, simulate, compare."""


@cli.command()
@click.option("--install", is_flag=True, help="Install missing Debian packages with apt-get.")
def doctor(install: bool) -> None:
    """Check every tool the flow needs; print its version, or the command that installs it."""
    from mobile.toolchain import check_tools as mobile_tools
    from sim import toolchain
    from synth_reports.tools import check_tools as synth_tools

    statuses = toolchain.check_tools() + mobile_tools() + synth_tools()
    if install:
        missing = toolchain.missing_debian_packages(statuses)
        if missing:
            click.echo(f"installing Debian packages: {' '.join(missing)}")
            try:
                toolchain.install_debian_packages(missing)
            except (toolchain.ToolchainError, OSError) as exc:
                raise UserError(str(exc)) from None
            statuses = toolchain.check_tools() + mobile_tools() + synth_tools()
    failed = False
    for s in statuses:
        if s.ok:
            click.echo(f"OK       {s.name:<16} {s.version}")
        else:
            failed |= s.required
            tag = "MISSING " if s.required else "optional"
            click.echo(f"{tag} {s.name:<16} {s.detail}; install with: {s.install_hint}")
    if failed:
        click.echo("codesign: error: a required tool is missing (see above)", err=True)
        sys.exit(1)


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
def inspect(bundle: Path) -> None:
    """Print a table per layer: op, shape, scheme, density, bits, storage."""
    from codesign.report import layer_table, print_table

    print_table(layer_table(_load_bundle(bundle)), title=f"bundle {bundle}")


def _block(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    pair = positive_pair(value)
    if pair is None:
        raise UserError(f"--block must look like 8x16 (positive), not {value!r}")
    return pair


_GATES_OPTION = click.option(
    "--gates", type=click.Choice(["auto", "dense", "bcr"]), default="auto", show_default=True,
    help="lstm/gru: the gate-product engine; auto = bcr for a BCR-pruned --layer, else dense.")

_SLICES_OPTION = click.option(
    "--slices", type=SLICES, default=1, show_default=True,
    help="bcr, and lstm/gru with BCR gates: BCR pipelines of --lanes lanes each over disjoint "
         "block rows.")


@cli.command()
@click.option("--engine", type=click.Choice(["dense", "bcr", "unstructured", "pattern", "lstm",
                                           "gru"]), default="dense", show_default=True)
@click.option("--rows", type=click.IntRange(min=1), help="Output rows (neurons).")
@click.option("--cols", type=click.IntRange(min=1), help="Input columns.")
@click.option("--bundle", type=click.Path(path_type=Path), help="Size the engine from a layer.")
@click.option("--layer", help="Layer name in --bundle.")
@click.option("--lanes", type=LANES, default=8, show_default=True)
@_SLICES_OPTION
@click.option("--weight-bits", type=click.IntRange(2, 16), help="Default 8, or the layer's bits.")
@click.option("--act-bits", type=click.IntRange(2, 16), default=8, show_default=True)
@click.option("--block", help="BCR block size RxC (default 8x16, or the layer's block).")
@click.option("--index-bits", type=click.IntRange(1, 16),
              help="Relative-index width of the unstructured engine (default 4, or the "
                   "layer's).")
@click.option("--image", type=click.IntRange(min=1), default=32, show_default=True,
              help="Largest input height/width of the pattern engine (rows/cols are its "
                   "output/input channels; for lstm/gru they are hidden/input sizes).")
@_GATES_OPTION
@click.option("--steps", type=click.IntRange(1, MAX_VECTORS), default=16, show_default=True,
              help="lstm/gru: longest sequence one build runs.")
@click.option("--name", help="Verilog module name (default: the engine's, or engine_layer).")
@click.option("--out", type=OUT_DIR, required=True, help="Output folder.")
def verilog(engine: str, rows: int | None, cols: int | None, bundle: Path | None,
            layer: str | None, lanes: int, slices: int, weight_bits: int | None,
            act_bits: int, block: str | None, index_bits: int, image: int, gates: str,
            steps: int, name: str | None, out: Path) -> None:
    """Emit an engine as Verilog plus its JSON sidecar (parameters, ports, memory map)."""
    from codesign.flow import emit_engine, layer_matrix

    blk = _block(block)
    rnn = engine in ("lstm", "gru")
    if gates != "auto" and not rnn:
        raise UserError("--gates is for the lstm and gru engines")
    ctx = click.get_current_context()
    for option, param, engines in (("--block", "block", ("bcr", "lstm", "gru")),
                                   ("--index-bits", "index_bits", ("unstructured",)),
                                   ("--image", "image", ("pattern",)),
                                   ("--steps", "steps", ("lstm", "gru"))):
        given = ctx.get_parameter_source(param) == click.core.ParameterSource.COMMANDLINE
        if given and engine not in engines:     # it was ignored without a word
            names = ", ".join(engines[:-1]) + " and " + engines[-1] if len(engines) > 1 \
                else engines[0]
            raise UserError(f"{option} is for the {names} engine"
                            f"{'s' if len(engines) > 1 else ''}, not {engine}")
    scales: dict = {}
    pattern: dict = {}
    if bundle is not None or layer is not None:
        if bundle is None or layer is None:
            raise UserError("--bundle and --layer go together")
        if rows is not None or cols is not None:
            raise UserError("give either --rows/--cols or --bundle/--layer, not both")
        lay = _get_layer(_load_bundle(bundle), layer)
        if rnn:
            from codesign.flow import check_rnn_layer, rnn_layer_gates

            try:
                check_rnn_layer(lay, engine)
                gates = rnn_layer_gates(lay, gates)
            except ValueError as exc:
                raise UserError(str(exc)) from None
            rows, cols = lay.shape.hidden_size, lay.shape.input_size
            scales = {"weight_scale": lay.quant.scale, "act_scale": lay.quant.act_scale}
            if gates == "bcr" and blk is None:
                blk = tuple(lay.scheme.block)
        else:
            try:
                rows, cols = layer_matrix(lay)[0].shape
            except ValueError as exc:
                raise UserError(str(exc)) from None
        if engine == "pattern":
            if lay.op != "conv2d":
                raise UserError(f"layer {layer!r} is {lay.op}; the pattern engine runs conv2d")
            rows, cols = lay.shape.out_channels, lay.shape.in_channels
        weight_bits = weight_bits or lay.quant.bits
        if engine == "bcr" and blk is None and lay.scheme.kind == "bcr":
            blk = tuple(lay.scheme.block)
        if engine == "unstructured" and index_bits is None:
            index_bits = getattr(lay.scheme, "index_bits", None)
        if engine == "pattern" and lay.scheme.kind == "pattern":   # as `simulate` builds it
            library = lay.scheme.library()
            pattern = {"library_size": len(library), "kept": int(library[0].sum())}
        name = name or f"{engine}_{layer}"
    elif rows is None or cols is None:
        raise UserError("give --rows and --cols, or --bundle and --layer")
    gates = "dense" if gates == "auto" else gates
    if rnn and block is not None and gates != "bcr":
        raise UserError(f"--block is for the {engine} engine with BCR gates (--gates bcr, or a "
                        "BCR-pruned --layer), not dense gates")
    try:
        v, j = emit_engine(engine, rows, cols, lanes, weight_bits or 8, act_bits,
                           name or f"{engine}_{'cell' if rnn else 'matvec'}", out,
                           block=blk or (8, 16), index_bits=index_bits or 4, image=image,
                           steps=steps, gates=gates, slices=slices, **scales, **pattern)
    except (TypeError, ValueError) as exc:
        raise UserError(f"layer {layer!r}: its {exc}" if layer is not None and str(exc)
                        .startswith("weight scale ") else str(exc)) from None
    click.echo(f"wrote {v}\nwrote {j}")


@cli.command()
@click.option("--bundle", type=click.Path(path_type=Path), required=True)
@click.option("--layer", required=True,
              help="A linear, conv2d, lstm or gru layer with integer weights.")
@click.option("--engine", type=click.Choice(["dense", "bcr", "unstructured", "pattern", "lstm",
                                           "gru"]),
              default="dense", show_default=True)
@_GATES_OPTION
@click.option("--steps", type=click.IntRange(1, MAX_VECTORS), default=8, show_default=True,
              help="lstm/gru: sequence length.")
@click.option("--lanes", type=LANES, default=8, show_default=True)
@_SLICES_OPTION
@click.option("--act-bits", type=click.IntRange(2, 16), default=8, show_default=True)
@click.option("--simulator", type=click.Choice(["verilator", "icarus"]), default="verilator",
              show_default=True)
@click.option("--vectors", type=click.IntRange(1, MAX_VECTORS), default=4, show_default=True,
              help="Random input vectors (pattern: input images).")
@click.option("--seed", type=SEED, default=0, show_default=True)
def simulate(bundle: Path, layer: str, engine: str, gates: str, steps: int, lanes: int,
             slices: int, act_bits: int, simulator: str, vectors: int, seed: int) -> None:
    """Run a layer on its engine's RTL; exit 1 if outputs or cycles disagree with the models.

    lstm/gru: a random sequence of --steps inputs from a zero state, every step's hidden state
    checked against the golden model; the gate products run on the BCR engine for a BCR-pruned
    layer (or as --gates says), and the cycles are compared with the dense-gated engine's.

    --slices N builds the BCR engine (bcr, or BCR gates) as N pipelines of --lanes lanes; the
    dense engine it is compared with keeps --lanes lanes.
    """
    from codesign.flow import simulate_layer, simulate_rnn_layer

    lay = _get_layer(_load_bundle(bundle), layer)
    rnn = engine in ("lstm", "gru")
    if gates != "auto" and not rnn:
        raise UserError("--gates is for the lstm and gru engines")
    try:
        if rnn:
            r = simulate_rnn_layer(lay, engine, gates, lanes=lanes, act_bits=act_bits,
                                   simulator=simulator, steps=steps, seed=seed, slices=slices)
        else:
            r = simulate_layer(lay, engine, lanes=lanes, act_bits=act_bits,
                               simulator=simulator, vectors=vectors, seed=seed, slices=slices)
    except (TypeError, ValueError) as exc:
        raise UserError(str(exc)) from None
    cycles_match = r["cycles"] == r["model_cycles"]
    width = f"{lanes} lanes" if slices == 1 else f"{slices} slices x {lanes} lanes"
    if rnn:
        click.echo(f"layer {r['layer']} ({engine}, input {r['cols']}, hidden {r['rows']}) on "
                   f"the {engine} engine with {r['gates']} gates, {width}, "
                   f"{r['weight_bits']}x{act_bits}-bit, {simulator}, {steps} steps")
        dense_what, bcr_what = "dense-gated engine", "BCR gates have"
    else:
        what = (f"{vectors} random {r['image']}x{r['image']} input image"
                f"{'s' if vectors > 1 else ''}" if engine == "pattern" else f"{vectors} vectors")
        click.echo(f"layer {r['layer']} ({r['rows']}x{r['cols']}) on the {engine} engine, "
                   f"{width}, {r['weight_bits']}x{act_bits}-bit, {simulator}, {what}")
        dense_what, bcr_what = "dense engine", "BCR engine has"
    click.echo(f"outputs match golden model: {'yes' if r['outputs_match'] else 'NO'}")
    speedup = (f"speedup {r['dense_cycles'] / r['cycles'][0]:.2f}x" if r["cycles"][0] > 0
               else "the engine takes no cycle (the layer keeps no weight)")
    multipliers = ("" if slices == 1 else f" (the {bcr_what} {slices} x {lanes} multipliers, "
                                          f"the {dense_what} {lanes})")
    click.echo(f"cycles: RTL {r['cycles'][0]}, cycle model {r['model_cycles'][0]} "
               f"({'match' if cycles_match else 'MISMATCH'}); {dense_what} "
               f"{r['dense_cycles']} -> {speedup}{multipliers}")
    if not (r["outputs_match"] and cycles_match):
        click.echo("codesign: error: the engine disagrees with the golden or cycle model",
                   err=True)
        sys.exit(1)


@cli.command()
@click.option("--out", type=OUT_DIR, default=Path("out/demo"),
              show_default=True, help="Output folder (bundle, Verilog, results).")
@click.option("--simulator", type=click.Choice(["verilator", "icarus"]), default="verilator",
              show_default=True)
@click.option("--lanes", type=LANES, default=8, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
def demo(out: Path, simulator: str, lanes: int, seed: int) -> None:
    """Run the flow end to end on a small model: bundle, Verilog, RTL simulation."""
    from codesign.flow import run_demo
    from codesign.options import outputs_problem

    problem = outputs_problem(out, ["demo.json"], ["bundle", "loop/bundle"],
                              ["verilog", "loop", "mobile"])
    if problem is not None:
        raise UserError(f"--out: {problem}")
    ok = run_demo(out, simulator=simulator, lanes=lanes, seed=seed, echo=click.echo)
    if not ok:
        click.echo("codesign: error: the engine's outputs or cycles do not match", err=True)
        sys.exit(1)


# Commands in their own modules (they import UserError from this one, so they come after it).
from codesign.compare_cmd import compare  # noqa: E402
from codesign.loop_cmd import loop  # noqa: E402
from codesign.mobile_cmd import mobile  # noqa: E402
from codesign.prune_cmd import prune  # noqa: E402
from codesign.retrain_cmd import retrain  # noqa: E402
from codesign.sweep_cmd import sweep  # noqa: E402
from codesign.synth_cmd import synth  # noqa: E402

for _command in (prune, retrain, loop, sweep, mobile, synth, compare):
    cli.add_command(_command)


def _get_layer(bundle, name: str):
    try:
        return bundle.layer(name)
    except KeyError as exc:
        raise UserError(exc.args[0]) from None


def _load_bundle(path: Path):
    from ir import Bundle, BundleError

    try:
        return Bundle.load(path)
    except BundleError as exc:
        raise UserError(f"cannot load bundle: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command; turn user errors into one line on stderr and exit 2."""
    try:
        cli.main(args=argv, prog_name="codesign", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("codesign: aborted", err=True)
        return 130
    except click.ClickException as exc:
        click.echo(f"codesign: error: {exc.format_message()}", err=True)
        return 2 if exc.exit_code in (1, 2) else exc.exit_code
    except TrainingDiverged as exc:  # a learning rate too high for the model and data
        click.echo(f"codesign: error: {exc}", err=True)
        return 2
    except SystemExit as exc:  # sys.exit inside a command, or --help / --version
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except OSError as exc:  # the machine refused a file: a full disk, no permission, ...
        if exc.filename is None or not exc.strerror:
            raise
        click.echo(f"codesign: error: {exc.filename}: {exc.strerror}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
