"""Every benchmark script checks its numbers and lists when its command line is parsed: a bad
value is one ``error: ...`` line and exit status 2 before any work, not a traceback minutes
into a run or a run on a meaningless value (each case below was one of those)."""

from __future__ import annotations

import importlib

import pytest

CASES = [
    # bench/datafree.py
    ("datafree", ["--seeds", "0"], "argument --seeds: must be an integer >= 1, not '0'"),
    ("datafree", ["--connectivity", "-1"], "argument --connectivity: must be a finite number in "
                                           "[0, 1), not '-1'"),
    ("datafree", ["--fc-ratio", "nan"], "argument --fc-ratio: must be a finite number in "
                                        "(1, 1e+12], not 'nan'"),
    ("datafree", ["--samples", "0"], "argument --samples: must be an integer >= 64, not '0'"),
    ("datafree", ["--df-lr", "inf"], "argument --df-lr: must be a finite number in (0, 1e+06], "
                                     "not 'inf'"),
    # bench/loop.py
    ("loop", ["--model", "resnet18"], "argument --model: invalid choice: 'resnet18' (choose "
                                      "from 'tinycnn', 'lenet5', 'vggsmall')"),
    ("loop", ["--engines", "bcr,foo"], "argument --engines: must be a comma-separated list of "
                                       "distinct names from bcr, unstructured, pattern, not "
                                       "'bcr,foo'"),
    ("loop", ["--targets", "0.5,1"], "argument --targets: every entry of the comma-separated "
                                     "list must be a finite number in [0, 1), not '1'"),
    ("loop", ["--seeds", "0,x"], "argument --seeds: every entry of the comma-separated list "
                                 "must be an integer from 0 to 4294967295, not 'x'"),
    ("loop", ["--lanes", "0"], "argument --lanes: must be an integer from 1 to 64, not '0'"),
    ("loop", ["--margin", "nan"], "argument --margin: must be a finite number in [0, 0.5], not "
                                  "'nan'"),
    # bench/retrain_screen.py
    ("retrain_screen", ["--first-seed", "-2"], "argument --first-seed: must be an integer from "
                                               "0 to 4294967295, not '-2'"),
    ("retrain_screen", ["--regrow-every", "0"], "argument --regrow-every: must be an integer "
                                                ">= 1, not '0'"),
    ("retrain_screen", ["--", "--ratios", "85,100"], "give one ratio after -- (--ratios 100), "
                                                     "not 85,100"),
    ("retrain_screen", ["--", "--ratios", "100", "--csv", "x.csv"],     # ran, wrote no x.csv
     "--csv is this screen's option: give it before --, not after"),
    ("retrain_screen", ["--", "--seeds=2"], "--seeds is this screen's option: give it before "
                                            "--, not after"),
    ("datafree", ["--samples", "100"], "--samples must be a multiple of 64, not 100"),
    # bench/engines.py
    ("engines", ["--block", "0x4"], "argument --block: must look like 8x16 (positive), not "
                                    "'0x4'"),
    ("engines", ["--groups", "matvec,foo"], "argument --groups: must be a comma-separated list "
                                            "of distinct names from matvec, pattern, rnn, not "
                                            "'matvec,foo'"),
    ("engines", ["--seed", "-1"], "argument --seed: must be an integer from 0 to 4294967295, "
                                  "not '-1'"),
    ("engines", ["--bits", "1"], "argument --bits: must be an integer from 2 to 16, not '1'"),
    ("engines", ["--slices", "17"], "argument --slices: must be an integer from 1 to 16, "
                                    "not '17'"),
    ("engines", ["--bits", "2"], "--bits 2: the rnn group needs at least 3 bits (its cell state "
                                 "has no fractional bit left at 2); leave rnn out of --groups"),
    # bench/fuzz_engines.py
    ("fuzz_engines", ["--layers", "0"], "argument --layers: must be an integer >= 1, not '0'"),
    # bench/pattern_engine.py
    ("pattern_engine", ["--channels", "0"], "argument --channels: must be an integer from 1 to "
                                            "512, not '0'"),
    # bench/sim_speed.py
    ("sim_speed", ["--size", "100"], "--size must be a multiple of 64, not 100"),
    ("sim_speed", ["--rounds", "0"], "argument --rounds: must be an integer from 1 to 10, not "
                                     "'0'"),
    ("sim_speed", ["--size", "64", "--lanes", "3"], "--lanes must be a multiple of 4 when "
                                                    "--engines has lstm, not 3"),
    ("sim_speed", ["--flavours", "fast,nope"], "argument --flavours: must be a comma-separated "
                                               "list of distinct names from default, fast, "
                                               "speed-gpi, speed, not 'fast,nope'"),
    # bench/sweep.py
    ("sweep", ["--workers", "1,0"], "argument --workers: every entry of the comma-separated "
                                    "list must be an integer >= 1, not '0'"),
    # bench/synth.py
    ("synth", ["--lanes", "0"], "argument --lanes: must be an integer from 1 to 64, not '0'"),
    ("synth", ["--engines", "dense,foo"], "argument --engines: must be a comma-separated list of "
                                          "distinct names from dense, bcr, unstructured, "
                                          "pattern, lstm, not 'dense,foo'"),
    ("synth", ["--seeds", "0"], "argument --seeds: must be an integer from 1 to 20, not '0'"),
    ("synth", ["--first-seed", "-1"], "argument --first-seed: must be an integer from 0 to "
                                      "2147483628, not '-1'"),
    ("fpga_mobile", ["--first-seed", "2147483629"], "argument --first-seed: must be an integer "
                                                    "from 0 to 2147483628, not '2147483629'"),
    ("synth", ["--ratios", "0.5,1"], "argument --ratios: every entry of the comma-separated "
                                     "list must be a finite number in [0, 1), not '1'"),
    # bench/mobile.py
    ("mobile", ["--image", "64000"], "argument --image: must be an integer from 32 to 1024, "
                                     "not '64000'"),
    ("mobile", ["--max-seconds", "nan"], "argument --max-seconds: must be a finite number > 0, "
                                         "not 'nan'"),
    ("mobile", ["--connectivity", "0.72,0.5,0.5001"], "--connectivity rates '0.72,0.5,0.5001' "
                                                     "give rows of the same name (ours pattern, "
                                                     "ours pattern 4.5x, ours pattern 4.5x); "
                                                     "give rates that differ in their weight "
                                                     "reduction"),
]


@pytest.mark.parametrize("script, argv, message", CASES,
                         ids=[f"{c[0]}{' '.join(c[1])}" for c in CASES])
def test_bad_value_is_one_error_line_before_any_work(script, argv, message, capsys, tmp_path):
    module = importlib.import_module(f"bench.{script}")
    entry = getattr(module, "parse_args", module.main)
    if script == "sweep":
        argv = [*argv, "--cache", str(tmp_path / "cache")]
    with pytest.raises(SystemExit) as exc:
        entry(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(f": error: {message}"), err
    assert not any("Traceback" in line for line in err)


def test_sweep_cache_that_is_a_file(tmp_path, capsys):
    from bench import sweep

    afile = tmp_path / "cache"
    afile.write_text("mine")
    with pytest.raises(SystemExit):
        sweep.main(["--cache", str(afile)])
    assert capsys.readouterr().err.strip().endswith(f"error: --cache: '{afile}' is a file, not "
                                                    "a folder")


def test_compression_divergence_is_one_line(tmp_path, capsys):
    """SGD at lr 1e5 makes the loss NaN in ADMM's first epoch: one line, exit status 1, no CSV
    (it was a TrainingDiverged traceback with exit status 1)."""
    from bench import compression

    csv = tmp_path / "c.csv"
    code = compression.main(["--quick", "--optimizer", "sgd", "--lr", "1e5", "--csv", str(csv)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == ["compression.py: training diverged: the loss is nan at epoch 1, step 3 "
                   "(lr 100000); lower the learning rate"]
    assert not csv.exists()


@pytest.mark.parametrize("script, stage, argv", [
    ("datafree", "run_seed", ["--seeds", "1"]),
    ("loop", "train", ["--quick", "--seeds", "0"]),
    ("retrain_screen", "screen", ["--", "--ratios", "100"]),
])
def test_training_benches_report_divergence(script, stage, argv, monkeypatch, capsys, tmp_path):
    """Every bench that trains turns a diverged training into one line and exit status 1."""
    from pruning.errors import TrainingDiverged

    module = importlib.import_module(f"bench.{script}")

    def diverge(*args, **kwargs):
        raise TrainingDiverged("training diverged: the loss is nan (lr 9); lower the learning rate")

    monkeypatch.setattr(module, stage, diverge)
    if script == "loop":
        argv = [*argv, "--out", str(tmp_path / "out")]
    elif script == "datafree":
        argv = [*argv, "--csv", str(tmp_path / "d.csv")]
    assert module.main(argv) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"{script}.py: training diverged: the loss is nan (lr 9); lower the learning rate")


def test_pattern_engine_bench_with_a_layer_that_keeps_no_kernel():
    """--channels 1: the lower keep rates keep no kernel, 0 cycles, and the speedup was a
    ZeroDivisionError after the RTL runs."""
    from bench.pattern_engine import measure

    df = measure(channels=1, image=4, lanes=2, simulator="icarus")
    empty = df[df.pattern_cycles == 0]
    assert len(empty) and empty.speedup.isna().all() and empty.ideal.isna().all()
    assert df.pattern_outputs_match.all() and (df.pattern_cycles == df.pattern_model).all()


def test_engines_bench_names_the_simulator_it_ran(tmp_path, monkeypatch, capsys):
    """--simulator icarus printed its rates as 'Verilator >= 500,000 simulated cycles/s' and
    the CSV did not say which simulator ran."""
    import pandas as pd

    from bench import engines

    monkeypatch.setattr(engines, "RESULTS", tmp_path)
    assert engines.main(["--quick", "--groups", "pattern", "--simulator", "icarus"]) == 0
    out = capsys.readouterr().out
    assert "Icarus simulated cycles/s: " in out and "Verilator >=" not in out
    assert set(pd.read_csv(tmp_path / "engines_quick.csv").simulator) == {"icarus"}
