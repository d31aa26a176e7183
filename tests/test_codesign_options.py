"""The argparse number types the benchmarks share (codesign.options.int_arg, float_arg,
list_arg): one clear error at parse time for every bad number, NaN and infinity included."""

import argparse
import math
import re

import pytest

from codesign.options import float_arg, int_arg, list_arg


def _fails(convert, text: str) -> str:
    with pytest.raises(argparse.ArgumentTypeError) as exc:
        convert(text)
    return str(exc.value)


def test_int_arg_bounds_and_junk():
    assert int_arg(0)("0") == 0 and int_arg(1, 3)("3") == 3
    assert _fails(int_arg(0), "-1") == "must be an integer >= 0, not '-1'"
    assert _fails(int_arg(1, 3), "4") == "must be an integer from 1 to 3, not '4'"
    for junk in ("", "1.5", "x", "nan"):
        assert _fails(int_arg(0), junk) == f"must be an integer >= 0, not {junk!r}"


def test_float_arg_bounds_open_and_closed_and_never_nan_or_inf():
    assert float_arg(0)("0") == 0.0 and float_arg(0, 1)("1") == 1.0
    assert _fails(float_arg(0, low_open=True), "0") == "must be a finite number > 0, not '0'"
    assert _fails(float_arg(0, 1, high_open=True), "1") == ("must be a finite number in [0, 1), "
                                                             "not '1'")
    for bad in ("nan", "inf", "-inf", "x", ""):    # NaN passes comparisons-based range checks
        assert _fails(float_arg(-math.inf), bad).endswith(f"not {bad!r}")


def test_list_arg_every_entry_checked_and_no_empty_entries():
    ratios = list_arg(float_arg(1, low_open=True))
    assert ratios("85, 100,150") == [85.0, 100.0, 150.0]
    assert _fails(ratios, "85,1") == ("every entry of the comma-separated list must be a finite "
                                      "number > 1, not '1'")
    assert _fails(ratios, "85,100,85.0") == "must not repeat an entry, not '85,100,85.0'"
    for bad in ("", "85,", ",", "85,,100"):
        assert _fails(ratios, bad) == ("must be a comma-separated list without empty entries, "
                                       f"not {bad!r}")


def test_argparse_reports_one_line_naming_the_option(capsys):
    p = argparse.ArgumentParser(prog="bench")
    p.add_argument("--lr", type=float_arg(0, low_open=True))
    with pytest.raises(SystemExit) as exc:
        p.parse_args(["--lr", "nan"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == ("bench: error: argument --lr: must be a "
                                                        "finite number > 0, not 'nan'")


@pytest.mark.parametrize("command", [
    ["prune", "--model", "tinycnn", "--scheme", "unstructured", "--ratio", "4"],
    ["demo"],
    ["mobile", "bundle"],
    ["retrain", "bundle", "--data", "digits"],
])
@pytest.mark.parametrize("seed", ["-1", str(2**64)])
def test_every_seed_option_is_0_to_2_32(command, seed, capsys, tmp_path):
    """numpy refused -1 (an error not naming --seed) and torch 2**64 (a traceback)."""
    from codesign.cli import main

    assert main([*command, "--seed", seed, "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == (f"codesign: error: Invalid value for '--seed': "
                                               f"{seed} is not in the range 0<=x<=4294967295.")
    assert not (tmp_path / "o").exists()


def test_whole_number_and_positive_pair_take_ascii_digits_only():
    from codesign.options import positive_pair, whole_number

    assert whole_number(" 42 ") == 42 and whole_number("0") == 0
    for bad in ("", "-1", "1.0", "\u00b2", "\u0663", "9" * 19, "1_000", "0x10"):
        assert whole_number(bad) is None, bad
    assert positive_pair("8X16") == (8, 16) and positive_pair(" 2 : 4 ", ":") == (2, 4)
    for bad in ("8", "8x16x2", "0x16", "8x", "\u00b2x2", "8by16", "2:" + "9" * 5000):
        assert positive_pair(bad) is None and positive_pair(bad, ":") is None, bad


def test_parse_quick_keeps_what_the_command_line_gives():
    """--quick overwrote given options: datafree --quick --seeds 2 ran one seed, loop --quick
    --model lenet5 ran tinycnn."""
    from bench import compression, datafree
    from codesign.options import parse_quick

    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--model", default="vggsmall")
    quick = {"seeds": 1, "model": "tinycnn"}
    assert vars(parse_quick(p, ["--quick"], quick)) == {"quick": True, "seeds": 1,
                                                         "model": "tinycnn"}
    assert vars(parse_quick(p, ["--quick", "--seeds", "3", "--model=lenet5"], quick)) == {
        "quick": True, "seeds": 3, "model": "lenet5"}
    assert vars(parse_quick(p, [], quick)) == {"quick": False, "seeds": 3, "model": "vggsmall"}
    assert p.get_default("seeds") == 3          # the parser is left as it was
    a = datafree.parse_args(["--quick", "--seeds", "2", "--samples", "256"])
    assert (a.seeds, a.samples, a.df_iters) == (2, 256, 2)
    a = compression.parse_args(["--quick", "--ratios", "85"])
    assert (a.seeds, a.ratio_list, a.admm_iters) == (1, [85.0], 2)


def _synth_report(path, engine, fmax, version=1, lanes=8, bits=8):
    import json

    path.write_text(json.dumps({"report_version": version,
                                "parameters": {"engine": engine, "lanes": lanes,
                                               "weight_bits": bits},
                                "device": "up5k" if fmax else "xc7",
                                "fmax_mhz": {"median": fmax, "min": fmax, "max": fmax}
                                if fmax else None}))
    return str(path)


def test_fmax_from_synth_reports(tmp_path):
    """sweep and loop `--fmax` take `codesign synth` reports: their median Fmax, the dense
    one's for DENSE, built with the run's lanes and weight bits; one sparse Fmax is for one
    engine (it was applied to every swept engine)."""
    from codesign.options import fmax_pair_arg

    bcr = _synth_report(tmp_path / "bcr.json", "bcr", 31.5)
    dense = _synth_report(tmp_path / "dense.json", "dense", 40.25)
    assert fmax_pair_arg(f"{bcr},{dense}", ["bcr"]) == (31.5, 40.25)
    assert fmax_pair_arg(f"{bcr},{dense}", ["bcr"], [8], [8]) == (31.5, 40.25)
    assert fmax_pair_arg(f"{bcr},50", ["bcr"]) == (31.5, 50.0)
    assert fmax_pair_arg("30,50", ["bcr"], [4, 8], [8]) == (30.0, 50.0)   # MHz: not checked
    for text, engines, lanes, message in (
        (f"{dense},{dense}", ["bcr"], None, "is a report of the dense engine; SPARSE must be "
                                            "the swept engine's (bcr)"),
        (f"{bcr},{bcr}", ["bcr"], None, "is a report of the bcr engine; DENSE must be the "
                                        "dense engine's"),
        (f"{bcr},{dense}", ["unstructured"], None, "SPARSE must be the swept engine's "
                                                   "(unstructured)"),
        (f"{bcr},{dense}", ["bcr", "unstructured"], None, "--fmax gives one sparse engine's "
                                                          "Fmax: run one --engine with it, not "
                                                          "bcr, unstructured"),
        ("30,50", ["bcr", "pattern"], None, "run one --engine with it"),
        (f"{bcr},{dense}", ["bcr"], [4], "is of an engine with 8 lanes; this run uses 4"),
        (f"{bcr},{dense}", ["bcr"], [4, 8], "this run uses 4, 8"),
        ("50,", ["bcr"], None, "--fmax must be SPARSE,DENSE (two MHz values or `codesign "
                               "synth` reports), not '50,'"),
        (f"{_synth_report(tmp_path / 'x.json', 'bcr', None)},{dense}", ["bcr"], None,
         "has no Fmax: xc7 reports give resources only"),
        (f"{_synth_report(tmp_path / 'v.json', 'bcr', 3.0, version=9)},{dense}", ["bcr"], None,
         "is not a report of `codesign synth`"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            fmax_pair_arg(text, engines, lanes)
    with pytest.raises(ValueError, match="is of an engine with 8 weight bits; this run uses 4"):
        fmax_pair_arg(f"{bcr},{dense}", ["bcr"], [8], [4])
