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

EXAMPLES = """
\b
Examples:
  codesign doctor                      check simulators and tools
  codesign doctor --install            install missing Debian tools (root)
  codesign demo --out out/demo         bundle -> Verilog -> simulation, end to end
  codesign inspect out/demo/bundle     per-layer table of a bundle
  codesign verilog --rows 64 --cols 64 --lanes 8 --out out/v
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
    from sim import toolchain

    statuses = toolchain.check_tools()
    if install:
        missing = toolchain.missing_debian_packages(statuses)
        if missing:
            click.echo(f"installing Debian packages: {' '.join(missing)}")
            try:
                toolchain.install_debian_packages(missing)
            except (toolchain.ToolchainError, OSError) as exc:
                raise UserError(str(exc)) from None
            statuses = toolchain.check_tools()
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


@cli.command()
@click.option("--rows", type=click.IntRange(min=1), required=True, help="Output rows (neurons).")
@click.option("--cols", type=click.IntRange(min=1), required=True, help="Input columns.")
@click.option("--lanes", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--weight-bits", type=click.IntRange(2, 16), default=8, show_default=True)
@click.option("--act-bits", type=click.IntRange(2, 16), default=8, show_default=True)
@click.option("--name", default="dense_matvec", show_default=True, help="Verilog module name.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder.")
def verilog(rows: int, cols: int, lanes: int, weight_bits: int, act_bits: int, name: str,
            out: Path) -> None:
    """Emit the dense matrix-vector engine as Verilog plus its JSON sidecar."""
    from codesign.flow import emit_dense

    try:
        v, j = emit_dense(rows, cols, lanes, weight_bits, act_bits, name, out)
    except (TypeError, ValueError) as exc:
        raise UserError(str(exc)) from None
    click.echo(f"wrote {v}\nwrote {j}")


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("out/demo"),
              show_default=True, help="Output folder (bundle, Verilog, results).")
@click.option("--simulator", type=click.Choice(["verilator", "icarus"]), default="verilator",
              show_default=True)
@click.option("--lanes", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def demo(out: Path, simulator: str, lanes: int, seed: int) -> None:
    """Run the flow end to end on a small model: bundle, Verilog, RTL simulation."""
    from codesign.flow import run_demo

    ok = run_demo(out, simulator=simulator, lanes=lanes, seed=seed, echo=click.echo)
    if not ok:
        click.echo("codesign: error: the engine's outputs or cycles do not match", err=True)
        sys.exit(1)


from codesign.prune_cmd import prune  # noqa: E402  (after UserError, which prune uses)

cli.add_command(prune)


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
    except SystemExit as exc:  # sys.exit inside a command, or --help / --version
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
