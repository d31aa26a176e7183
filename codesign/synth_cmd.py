"""``codesign synth``: an emitted engine's resources and Fmax, so its cycles become seconds.

Takes the ``.v`` that ``codesign verilog`` wrote (its JSON sidecar beside it). On an iCE40 part
(``--device up5k`` or ``hx8k``) or an ECP5 part (``ecp5-25k``, ``ecp5-85k``): Yosys
``synth_ice40``/``synth_ecp5`` for the engine's LUT/FF/BRAM/DSP, then the engine in a four-pin
harness (:mod:`synth_reports.harness`) through nextpnr-ice40/nextpnr-ecp5, once per seed, for
Fmax. ``--device xc7``: Yosys's 7-series mapping only (estimates; no Fmax). Writes
``OUT/<module>.<device>.synth.json`` and the tools' scripts, logs and reports in
``OUT/<module>.<device>.synth/`` (marked by a ``.codesign-synth`` file: no other folder is
replaced); a failed run leaves its logs in ``OUT/<module>.<device>.synth.failed/`` and no report
(an earlier run's report and folder are removed: they describe other Verilog).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import click

from codesign.options import (
    FIRST_SEED,
    FIRST_SEED_HELP,
    OUT_DIR,
    PNR_TIMEOUT,
    PNR_TIMEOUT_HELP,
    ROUTER_HELP,
    ROUTERS,
)
from synth_reports.tools import TIMEOUT_S

__all__ = ["synth", "run_synth"]


def _user_error(message: str) -> Exception:
    from codesign.cli import UserError  # imported here: codesign.cli imports this module

    return UserError(" ".join(str(message).split()))


def _swap_folder(src: Path, dst: Path) -> None:
    """Put folder ``src`` at ``dst``, replacing a folder there."""
    if dst.is_dir() and not dst.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
        os.replace(dst, old / "x")
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


#: A file in every folder ``codesign synth`` writes; only such a folder is ever replaced.
MARKER = ".codesign-synth"


def _within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _put_away(path: Path) -> None:
    """Remove a folder (or file) of an earlier run that no longer belongs to the report."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def run_synth(verilog: Path, device: str, out: Path, *, target_mhz: float = 48.0,
              seeds: int = 1, router: str = "router1", pnr_timeout_s: float = TIMEOUT_S,
              first_seed: int = 1):
    """Synthesise ``verilog`` into ``out``; return ``(SynthReport, report path)``.

    nextpnr runs once per placement seed, ``first_seed`` to ``first_seed + seeds - 1``.

    Raises :class:`codesign.cli.UserError` for bad input, a missing or failing tool and a design
    that does not fit.
    """
    from codesign.options import folder_problem
    from synth_reports.flow import read_sidecar, save_report, synth_engine
    from synth_reports.tools import SynthError

    try:
        _, meta = read_sidecar(verilog)
    except ValueError as exc:
        raise _user_error(str(exc)) from None
    top = str(meta["toplevel"])
    stem = f"{top}.{device}.synth"
    work_dir, report_path = out / stem, out / f"{stem}.json"
    failed_dir = out / f"{stem}.failed"
    for path, kind in ((work_dir, "folder"), (failed_dir, "folder"), (report_path, "file")):
        if path.is_symlink():
            raise _user_error(f"{path} is a symbolic link; codesign synth writes a real {kind} "
                              "there")
        if path.exists() and path.is_dir() != (kind == "folder"):
            raise _user_error(f"{path} is in the way: it should be a {kind}")
        if kind == "folder" and path.is_dir() and not (path / MARKER).is_file():
            raise _user_error(f"{path} is in the way: it is not a folder codesign synth wrote "
                              f"(no {MARKER} in it), and it would be replaced")
        if kind == "folder" and (_within(Path(verilog), path)
                                 or _within(Path(verilog).with_suffix(".json"), path)):
            raise _user_error(f"{verilog} is inside {path}, which this run replaces; copy it "
                              "elsewhere first")
    problem = folder_problem(out)
    if problem:
        raise _user_error(problem)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{stem}-", dir=out))
    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)            # mkdtemp's 0700 would hide the logs from others
    (tmp / MARKER).write_text("written by codesign synth; replaced by its next run\n")
    try:
        report = synth_engine(verilog, device, tmp, target_mhz=target_mhz,
                              seeds=tuple(range(first_seed, first_seed + seeds)),
                              router=router,
                              pnr_timeout_s=pnr_timeout_s)
    except (ValueError, SynthError) as exc:
        message = str(exc)
        if isinstance(exc, SynthError):
            # the earlier run's report and folder describe other Verilog now: put them away
            _put_away(report_path)
            _put_away(work_dir)
            _swap_folder(tmp, failed_dir)
            message = message.replace(str(tmp), str(failed_dir))
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        raise _user_error(message) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_folder(tmp, work_dir)
    save_report(report, report_path)
    _put_away(failed_dir)
    return report, report_path


def _fmt_brams(value: float) -> str:
    return f"{value:g}"


@click.command()
@click.argument("verilog", type=click.Path(path_type=Path))
@click.option("--device", type=click.Choice(["up5k", "hx8k", "ecp5-25k", "ecp5-85k", "xc7"]),
              default="up5k", show_default=True,
              help="up5k/hx8k (iCE40), ecp5-25k/ecp5-85k: Yosys + nextpnr (resources and "
                   "Fmax); xc7: Yosys estimate of 7-series resources, no Fmax.")
@click.option("--freq", type=click.FloatRange(0, 1000, min_open=True), default=48.0,
              show_default=True, help="nextpnr's target frequency in MHz.")
@click.option("--seeds", type=click.IntRange(1, 20), default=1, show_default=True,
              help="Placement seeds, one nextpnr run each (1..N, or from --first-seed); Fmax "
                   "is their median.")
@click.option("--first-seed", type=FIRST_SEED, default=1, show_default=True,
              help=FIRST_SEED_HELP)
@click.option("--router", type=click.Choice(ROUTERS), default="router1", show_default=True,
              help=ROUTER_HELP)
@click.option("--pnr-timeout", type=PNR_TIMEOUT, default=TIMEOUT_S, show_default=True,
              help=PNR_TIMEOUT_HELP)
@click.option("--cycles", type=click.IntRange(min=0), multiple=True,
              help="Cycle counts (from `codesign simulate`) to convert to microseconds at Fmax.")
@click.option("--out", type=OUT_DIR, required=True, help="Output folder.")
def synth(verilog: Path, device: str, freq: float, seeds: int, first_seed: int, router: str,
          pnr_timeout: int, cycles: tuple[int, ...], out: Path) -> None:
    """Synthesise an engine from `codesign verilog`: LUT/FF/BRAM/DSP and Fmax."""
    from synth_reports.flow import cycles_to_us, seed_words

    if not math.isfinite(freq):
        raise _user_error(f"--freq must be a finite number of MHz above 0 and at most 1000, "
                          f"not {freq}")
    source = click.get_current_context().get_parameter_source
    if device == "xc7" and (seeds != 1 or cycles or any(
            source(p) == click.core.ParameterSource.COMMANDLINE
            for p in ("freq", "first_seed", "router", "pnr_timeout"))):
        raise _user_error("--freq, --seeds, --first-seed, --router, --pnr-timeout and --cycles "
                          "need place and route on an iCE40 or ECP5 part (--device up5k, hx8k, "
                          "ecp5-25k or ecp5-85k); xc7 gives resources only")
    report, path = run_synth(verilog, device, out, target_mhz=freq, seeds=seeds, router=router,
                             pnr_timeout_s=pnr_timeout, first_seed=first_seed)
    r = report.resources
    click.echo(f"{report.toplevel} on {device}: {r.luts:,} LUTs, {r.ffs:,} flip-flops, "
               f"{r.carries:,} carries, {_fmt_brams(r.brams)} block RAMs, {r.dsps} DSPs"
               + (f", {r.lutram:,} LUT-RAM cells" if r.lutram else "")
               + (" (Yosys estimate)" if device == "xc7" else ""))
    if report.runs:
        h = report.runs[0].utilization
        cell, what = (("ICESTORM_LC", "logic cells") if "ICESTORM_LC" in h
                      else ("TRELLIS_COMB", "LUT4s"))
        lc = h.get(cell, (0, 0))
        fm = [x.fmax_mhz for x in report.runs]
        placed = seed_words([x.seed for x in report.runs])
        spread = (f" ({placed}: {min(fm):.2f}-{max(fm):.2f})" if len(fm) > 1
                  else f" ({placed})" if report.runs[0].seed != 1 or report.timed_out else "")
        click.echo(f"in its harness: {lc[0]:,} of {lc[1]:,} {what}; Fmax "
                   f"{report.fmax_mhz:.2f} MHz{spread} at target {freq:g} MHz"
                   + (f" ({router})" if router != "router1" else ""))
        for s in report.timed_out:
            click.echo(f"seed {s}: nextpnr ran longer than {pnr_timeout} s and was stopped "
                       f"(log: {path.with_suffix('') / f'pnr_seed{s}.nextpnr.log'})")
        for n in cycles:
            click.echo(f"{n:,} cycles = {cycles_to_us(n, report.fmax_mhz):.3f} us at "
                       f"{report.fmax_mhz:.2f} MHz")
    click.echo(f"wrote {path}")
