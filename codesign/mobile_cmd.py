"""``codesign mobile``: generated C for a bundle's layers, built, checked and costed.

For one layer (``--layer``) or every layer (``--all``) of ``--bundle``: generate the layer's
kernels (its sparse kernel and the dense baseline, see :mod:`mobile.layers`), build them for
``--target`` (host: ``-march=x86-64-v3``; aarch64: Debian's cross gcc, ``-mcpu=cortex-a76``),
check them against the ``ir`` golden model (int8 bit-exact, fp32 within 1e-5 relative), report
code size against an instruction-cache budget and the cost against dense: measured time on the
host, a modelled sparse/dense ratio band on aarch64. Writes ``OUT/<layer>/`` (C sources, data,
``report.json``). Exits 1 when a check fails; every bad input is a :class:`codesign.cli.UserError`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from codesign.options import OUT_DIR, SEED, positive_pair

__all__ = ["mobile", "load_bundle", "run_mobile", "demo_stage", "DEMO_LAYERS"]

#: Demo bundle layers the demo's mobile stage generates code for.
DEMO_LAYERS = ("fc1", "fc2", "conv2")
#: Input of TinyCNN's conv2 (8x8 digits after one 2x2 pooling).
DEMO_IMAGE = (4, 4)


def _user_error(message: str) -> Exception:
    from codesign.cli import UserError  # imported here: codesign.cli imports this module

    return UserError(" ".join(str(message).split()))


MAX_IMAGE_SIDE = 1024          # pixels per side of a convolution's input
MAX_INPUT_VALUES = 1 << 24     # channels x height x width of one convolution's input


def _image(text: str) -> tuple[int, int]:
    pair = positive_pair(f"{text}x{text}" if "x" not in text.lower() else text)
    if pair is None:
        raise _user_error(f"--image must look like 16 or 16x12 (positive), not {text!r}")
    if max(pair) > MAX_IMAGE_SIDE:
        raise _user_error(f"--image sides must be at most {MAX_IMAGE_SIDE}, not {text!r}")
    return pair


def load_bundle(bundle_path: Path):
    """The bundle at ``bundle_path``; :class:`codesign.cli.UserError` when there is none or it
    does not load."""
    from ir import Bundle, BundleError

    if not (bundle_path / "manifest.json").is_file():
        raise _user_error(f"no bundle at {bundle_path} (expected {bundle_path}/manifest.json)")
    try:
        return Bundle.load(bundle_path)
    except (BundleError, OSError) as exc:
        raise _user_error(f"cannot load bundle: {exc}") from None


def run_mobile(bundle_path: Path, layers: list[str] | None, target: str, out: Path,
               dtype: str = "auto", image: tuple[int, int] = (16, 16), budget: int = 65536,
               measure: bool = True, seed: int = 0,
               echo: Callable[[str], None] = click.echo) -> list:
    """Run :func:`mobile.run.run_layer` for ``layers`` (None: all) of a bundle; print the
    report lines; return the :class:`mobile.run.LayerReport` list. User errors raise
    :class:`codesign.cli.UserError`."""
    from mobile.build import BuildError
    from mobile.layers import layer_kernels
    from mobile.run import folder_names, folder_problem, format_report, run_layer

    bundle_path = Path(bundle_path)
    bundle = load_bundle(bundle_path)
    names = [lay.name for lay in bundle.layers]
    layers = list(dict.fromkeys(layers or ()))      # a layer named twice runs once
    for name in layers:
        if name not in names:
            raise _user_error(f"no layer {name!r} in {bundle_path}; layers: {', '.join(names)}")
    for name in layers or names:
        lay = bundle.layer(name)
        if lay.op == "conv2d":
            size = lay.shape.in_channels * image[0] * image[1]
            if size > MAX_INPUT_VALUES:
                raise _user_error(f"--image {image[0]}x{image[1]} gives layer {name!r} "
                                  f"{lay.shape.in_channels}x{image[0]}x{image[1]} = {size:,} "
                                  f"input values; at most {MAX_INPUT_VALUES:,}")
    # Every layer of the bundle, not only those chosen, so a layer's folder is the same in
    # every run (with fc.2 and fc_2, fc_2 got fc_2/ alone and fc_2_2/ beside fc.2).
    folders = folder_names(names)
    for name in layers or names:        # before any layer is built
        try:
            layer_kernels(bundle.layer(name), dtype, image)
        except ValueError as exc:
            raise _user_error(f"{exc} (--image {image[0]}x{image[1]})" if "input image" in
                              str(exc) else str(exc)) from None
        problem = folder_problem(out / folders[name])
        if problem is not None:
            raise _user_error(problem)
    reports = []
    for name in layers or names:
        try:
            report = run_layer(bundle.layer(name), target, out, dtype=dtype, image=image,
                               budget=budget, measure=measure, seed=seed,
                               folder=folders[name])
        except (ValueError, BuildError) as exc:
            raise _user_error(str(exc).splitlines()[0] if isinstance(exc, ValueError)
                              else str(exc)) from None
        for line in format_report(report):
            echo(line)
        reports.append(report)
    return reports


@click.command()
@click.option("--bundle", type=click.Path(path_type=Path), required=True,
              help="Bundle folder (manifest.json + weights.safetensors).")
@click.option("--layer", "layer_names", multiple=True, help="Layer name (repeatable).")
@click.option("--all", "all_layers", is_flag=True, help="Every layer of the bundle.")
@click.option("--target", type=click.Choice(["host", "aarch64"]), default="host",
              show_default=True, help="host: measured time; aarch64: qemu + llvm-mca model.")
@click.option("--dtype", type=click.Choice(["auto", "fp32", "int8"]), default="auto",
              show_default=True, help="auto: int8 for layers with <= 8-bit weights.")
@click.option("--image", default="16", show_default=True,
              help="Input height x width of convolution layers, e.g. 16 or 32x24 (at most "
                   "1024 a side).")
@click.option("--icache-budget", type=click.IntRange(min=1), default=65536, show_default=True,
              help="Instruction-cache budget for one kernel's code, bytes.")
@click.option("--no-cost", is_flag=True, help="Build and check only.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--out", type=OUT_DIR, required=True, help="Output folder.")
def mobile(bundle: Path, layer_names: tuple[str, ...], all_layers: bool, target: str, dtype: str,
           image: str, icache_budget: int, no_cost: bool, seed: int, out: Path) -> None:
    """Generate ARM/host C kernels for bundle layers, build, check against ir.golden, cost."""
    import sys

    if bool(layer_names) == all_layers:
        raise _user_error("give --layer NAME (one or more) or --all, not both or neither")
    reports = run_mobile(bundle, None if all_layers else list(layer_names), target, out, dtype,
                         _image(image), icache_budget, not no_cost, seed)
    click.echo(f"wrote {out}")
    if not all(r.ok for r in reports):
        click.echo("codesign: error: a generated kernel does not match the golden model",
                   err=True)
        sys.exit(1)


def demo_stage(bundle_path: Path, out: Path, echo: Callable[[str], None] = print) -> bool:
    """The demo's mobile stage: :data:`DEMO_LAYERS` on the host (checked, timed) and, when
    the aarch64 tools are present, under qemu (checked, modelled ratio). Returns all-checked."""
    from mobile.toolchain import missing_tools

    ok = True
    targets = ["host"] + ([] if missing_tools() else ["aarch64"])
    for target in targets:
        echo(f"mobile: generating C for {', '.join(DEMO_LAYERS)}, {target} ...")
        reports = run_mobile(bundle_path, list(DEMO_LAYERS), target, Path(out) / target,
                             image=DEMO_IMAGE, echo=echo)
        ok &= all(r.ok for r in reports)
    if len(targets) == 1:
        echo("mobile: aarch64 skipped (" + ", ".join(missing_tools()) + " missing; "
             "codesign doctor --install)")
    return ok
