"""codesign loop on the command line: bad input is one line and exit 2 (the whole loop in RTL
is tested in test_codesign_loop.py and by the demo)."""

from __future__ import annotations

import pytest

from codesign.cli import main

BASE = ["loop", "--model", "tinycnn", "--engine", "bcr"]


@pytest.mark.parametrize("args, message", [
    ([], "give one of --ratio (a compression ratio above 1) or --sparsity (a pruned fraction "
         "in [0, 1))"),
    (["--ratio", "4", "--sparsity", "0.5"], "give one of --ratio"),
    (["--ratio", "0.5"], "--ratio must be a compression ratio greater than 1 (10 keeps 1/10 of "
                         "the weights), not 0.5"),
    (["--ratio", "1e13"], "--ratio must be at most 1e+12, not 1e+13"),
    (["--sparsity", "1.5"], "--sparsity must be a pruned fraction in [0, 1), not 1.5"),
    (["--sparsity", "0.5", "--block", "8by16"], "--block must look like 8x16 (positive), not "
                                                "'8by16'"),
    (["--sparsity", "0.5", "--block", "0x16"], "--block must look like 8x16 (positive), not "
                                               "'0x16'"),
    (["--sparsity", "0.5", "--fmax", "0,40"], "--fmax must be two positive finite MHz values "
                                              "or `codesign synth` reports SPARSE,DENSE, not "
                                              "'0,40'"),
    (["--sparsity", "0.5", "--fmax", "none.json,40"], "--fmax: cannot read none.json"),
])
def test_loop_user_errors(capsys, tmp_path, args, message):
    assert main(BASE + args + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"codesign: error: {message}" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_loop_unknown_model_and_engine_without_layers(capsys, tmp_path):
    assert main(["loop", "--model", "nope", "--engine", "bcr", "--sparsity", "0.5",
                 "--out", str(tmp_path)]) == 2
    assert "unknown model 'nope'; known:" in capsys.readouterr().err
    assert main(["loop", "--model", "lstm", "--engine", "pattern", "--sparsity", "0.5",
                 "--out", str(tmp_path / "o")]) == 2
    assert ("codesign: error: lstm: the pattern engine can run no layer of this model"
            in capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


def test_loop_help_lists_the_options(capsys):
    assert main(["loop", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in ("--engine", "--lanes", "--bits", "--ratio", "--epochs", "--admm-iters",
                "--tolerance", "--seeds", "--val-fraction", "--push-order", "--fmax", "--out"):
        assert opt in out


def test_loop_validation_fraction_that_empties_a_class(capsys, tmp_path):
    assert main(BASE + ["--sparsity", "0.5", "--val-fraction", "0.999", "--out",
                        str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert ("codesign: error: --val-fraction: Validation fraction 0.999 leaves class 0 of "
            "digits with no training sample") in err and "Traceback" not in err


def test_a_store_that_is_not_one_is_found_before_the_training(capsys, tmp_path):
    """--store on a JSON file: the dense model was trained first (and OUT/dense.pt written),
    then 'file is not a database'."""
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}\n' * 200)
    assert main(BASE + ["--sparsity", "0.5", "--store", str(notes), "--out",
                        str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"codesign: error: cannot open the results store {notes}: ") and \
        "training dense" not in err
    assert not (tmp_path / "o" / "dense.pt").exists()
    assert notes.read_text() == '{"mine": 1}\n' * 200
