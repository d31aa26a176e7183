"""Tests of ``codesign sweep``: resumable after SIGKILL, a running Dask scheduler, bad addresses.

Every sweep runs TinyCNN's ``fc2`` (10 x 48) on Verilator, the builds that
``tests/test_sim_breakeven.py`` uses too (shared through the session's simulator cache).
"""

from __future__ import annotations

import csv
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _sweep(out: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "codesign", "sweep", "--model", "tinycnn", "--layers", "fc2",
            "--out", str(out), "--cache", str(cache), "--no-progress", *extra]


def _rows(db: Path) -> list[tuple]:
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(db, timeout=5)
        try:
            return con.execute("SELECT key, layer, engine, lanes, weight_bits, ratio, seed "
                               "FROM points").fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError:  # the table is not created yet
        return []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_gone(pgid: int, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def test_sweep_killed_and_rerun_stores_every_point_once(tmp_path, sim_cache_dir,
                                                        require_simulator, capsys):
    require_simulator("verilator")
    out = tmp_path / "out"
    db = out / "points.sqlite"
    args = _sweep(out, sim_cache_dir, "--engine", "unstructured", "--ratios", "0,0.3,0.6,0.9",
                  "--seeds", "2", "--tol", "0.1", "--chunk", "6", "--workers", "1")
    proc = subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        end = time.monotonic() + 400
        while len(_rows(db)) == 0:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < end, "no point was stored in time"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)          # the CLI, its cluster and its workers
        proc.wait()
    assert _group_gone(proc.pid)
    stored_at_kill = len(_rows(db))
    assert not (out / "breakeven.csv").exists()      # killed before the end

    done = subprocess.run(args, cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = _rows(db)
    keys = [r[0] for r in rows]
    contents = [r[1:] for r in rows]
    assert len(keys) == len(set(keys)) and len(contents) == len(set(contents))
    with open(out / "points.csv", newline="") as f:
        used = [r["key"] for r in csv.DictReader(f)]
    assert sorted(used) == sorted(keys)              # every planned point, exactly once
    assert stored_at_kill < len(keys)                # the kill really was mid-run
    assert f"{stored_at_kill} points in the store; running {len(keys) - stored_at_kill} " \
           "points" in done.stdout
    with open(out / "breakeven.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["layer"] == "fc2" and row["breakeven_ratio"] == row["predicted_ratio"] != ""
    assert int(row["rtl_runs"]) == 2 * len(keys)
    assert (out / "plots" / "tinycnn_fc2.png").stat().st_size > 0
    assert (out / "summary_tinycnn.csv").exists()

    # a third run (in this process) finds everything stored and starts no cluster
    from codesign.cli import main

    assert main(args[3:]) == 0
    third = capsys.readouterr().out
    assert f"0 points run, {len(keys)} reused" in third
    # nothing ran, so only the planning and the outputs took time
    assert re.findall(r"(\w+) \d+\.\d s", third.split("wall time: ", 1)[1]) == \
        ["plan", "outputs"], third


def test_sweep_on_a_running_dask_scheduler(tmp_path, sim_cache_dir, require_simulator, capsys):
    require_simulator("verilator")
    from distributed import Client

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    sched = subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", str(port),
                              "--dashboard-address", ":0"], cwd=ROOT, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                               "--nthreads", "1", "--nworkers", "1", "--dashboard-address",
                               ":0"], cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with Client(address, timeout=120) as client:
            client.wait_for_workers(1, timeout=180)
        from codesign.cli import main

        out = tmp_path / "out"
        args = _sweep(out, sim_cache_dir, "--engine", "bcr", "--ratios", "0,0.5,0.9", "--seeds",
                      "1", "--tol", "0.2", "--scheduler", address)
        assert main(args[3:]) == 0, capsys.readouterr().err
        printed = capsys.readouterr().out
        assert f"on {address}" in printed
        assert "wall time: plan " in printed and ", run " in printed and ", outputs " in printed
        with open(out / "breakeven.csv", newline="") as f:
            (row,) = list(csv.DictReader(f))
        assert row["engine"] == "bcr" and row["breakeven_ratio"] == row["predicted_ratio"]
    finally:
        for p in (worker, sched):
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_unreachable_scheduler_is_one_clear_error(tmp_path):
    port = _free_port()                               # nothing listens there
    done = subprocess.run(_sweep(tmp_path / "out", tmp_path / "cache", "--scheduler",
                                 f"tcp://127.0.0.1:{port}"),
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith(f"codesign: error: cannot reach the Dask scheduler at "
                                  f"tcp://127.0.0.1:{port} ("), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, message", [
    (["--engine", "dense"], "--engine must be a comma-separated list of unstructured, bcr, "
                            "pattern, not 'dense'"),
    (["--ratios", "0,1.5"], "--ratios must be comma-separated pruned fractions in [0, 1], "
                            "not '0,1.5'"),
    (["--lanes", "0"], "--lanes must be a comma-separated list of integers from 1 to 64, "
                       "not '0'"),
    (["--bits", "8,\u2078"], "--bits must be a comma-separated list of integers from 2 to 16, "
                           "not '8,\u2078'"),      # '\u2078'.isdigit() but int() refuses it
    (["--block", "8x\u00b9\u2076"], "--block must look like 8x16 (positive), not "
                                  "'8x\u00b9\u2076'"),
    (["--layers", "nope"], "unknown layer(s) nope; known: conv1, conv2, fc1, fc2"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "--workers starts a local "
                                                               "cluster; it cannot be combined "
                                                               "with --scheduler"),
    (["--fmax", "inf,100"], "--fmax must be two positive finite MHz values or "
                            "`codesign synth` reports SPARSE,DENSE, not 'inf,100'"),      # used to start the sweep
    (["--fmax", "nan,100"], "--fmax must be two positive finite MHz values or "
                            "`codesign synth` reports SPARSE,DENSE, not 'nan,100'"),
    (["--fmax", "0,100"], "--fmax must be two positive finite MHz values or "
                          "`codesign synth` reports SPARSE,DENSE, not '0,100'"),
    (["--fmax", "100"], "--fmax must be SPARSE,DENSE (two MHz values or `codesign synth` "
                        "reports), not '100'"),
    (["--fmax", "nope.json,100"], "--fmax: cannot read nope.json: No such file or directory"),
    (["--scheduler", "localhost:8786"], "--scheduler must look like tcp://HOST:PORT, not "
                                        "'localhost:8786'"),
    (["--scheduler", "foo://x"], "bad Dask scheduler address 'foo://x': unknown address scheme "
                                 "'foo' (known schemes: ['inproc', 'tcp', 'tls', 'ucx', 'ws', "
                                 "'wss'])"),
])
def test_bad_options(tmp_path, capsys, extra, message):
    from codesign.cli import main

    args = ["sweep", "--model", "tinycnn", "--out", str(tmp_path / "o"), *extra]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == f"codesign: error: {message}"


def test_cache_that_is_a_file(tmp_path, capsys):
    from codesign.cli import main

    afile = tmp_path / "cache"
    afile.write_text("mine")
    args = ["sweep", "--model", "tinycnn", "--cache", str(afile), "--out", str(tmp_path / "o")]
    assert main(args) == 2      # each task used to fail with a NotADirectoryError traceback
    assert capsys.readouterr().err.strip() == (f"codesign: error: Invalid value for '--cache': "
                                               f"'{afile}' is a file, not a folder")
    assert afile.read_text() == "mine" and not (tmp_path / "o").exists()


def test_unknown_model(tmp_path, capsys):
    from codesign.cli import main

    assert main(["sweep", "--model", "nosuch", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("codesign: error: unknown model 'nosuch'; known:")


def test_bundle_layers_keep_their_own_weight_bits(tmp_path):
    """``--bundle``: each layer is measured with its own weight bits (``--bits``: activations);
    zoo layers with ``--bits`` for both; layers sharing configurations share a group."""
    from codesign.sweep import bundle_layers, model_layers
    from codesign.sweep_cmd import sweep_groups
    from ir import Bundle
    from pruning.export import export
    from pruning.plan import Plan, resolve
    from pruning.zoo import build

    model = build("tinycnn", seed=0)
    plan = Plan.from_dict({"layers": {
        "conv1": {"scheme": "dense", "bits": 6}, "conv2": {"scheme": "dense", "bits": 8},
        "fc1": {"scheme": "unstructured", "sparsity": 0.5, "bits": 4},
        "fc2": {"scheme": "unstructured", "sparsity": 0.5, "bits": 8}}})
    export(model, resolve(plan, model), model_name="tinycnn").save(tmp_path / "b")
    name, specs = bundle_layers(tmp_path / "b")
    layer_bits = {x.name: x.quant.bits for x in Bundle.load(tmp_path / "b").layers}
    assert layer_bits == {"conv1": 6, "conv2": 8, "fc1": 4, "fc2": 8}
    groups = sweep_groups([("tinycnn", model_layers("tinycnn"))], [(name, specs, layer_bits)],
                          ["unstructured"], [8], [8, 10])
    got = [([(m, [s.name for s in sp]) for m, sp in entries],
            [(c.weight_bits, c.act_bits) for c in configs]) for entries, configs in groups]
    assert got == [
        ([("tinycnn", ["conv1", "conv2", "fc1", "fc2"])], [(8, 8), (10, 10)]),
        ([("tinycnn", ["conv1"])], [(6, 8), (6, 10)]),
        ([("tinycnn", ["conv2", "fc2"])], [(8, 8), (8, 10)]),
        ([("tinycnn", ["fc1"])], [(4, 8), (4, 10)])]
    # an unquantized bundle layer runs as a zoo layer
    (entries, configs), = sweep_groups([], [(name, specs[:1], {"conv1": None})],
                                       ["bcr"], [4], [8])
    assert [(c.engine, c.lanes, c.weight_bits, c.act_bits) for c in configs] == [
        ("bcr", 4, 8, 8)]


def test_split_even_parts_and_priorities():
    from codesign.sweep import _split, _task_cost, model_layers

    for n, chunk, sizes in ((1, 64, [1]), (64, 64, [64]), (69, 64, [35, 34]),
                            (129, 64, [43, 43, 43])):
        parts = _split(list(range(n)), chunk)
        assert [len(p) for p in parts] == sizes
        assert sum(parts, []) == list(range(n))
    big, small = model_layers("vggsmall")[-2], model_layers("vggsmall")[0]
    assert _task_cost(big, 10) > _task_cost(small, 10) > _task_cost(small, 1)


def test_builds_run_before_every_point_task(tmp_path, sim_cache_dir, require_simulator):
    """Every build runs before the first point task: no configuration's builds wait behind
    another configuration's points (they would hold all of their own points back into the
    tail, as a Dask scheduler queues tasks without dependencies)."""
    require_simulator("verilator")
    from distributed import get_task_stream

    from codesign.store import SQLiteStore
    from codesign.sweep import connect, model_layers, run_sweep
    from sim.breakeven import EngineConfig

    fc2 = [s for s in model_layers("tinycnn") if s.name == "fc2"]
    configs = [EngineConfig("unstructured"), EngineConfig("bcr")]
    with connect(None, 1) as client, get_task_stream(client) as ts, \
            SQLiteStore(tmp_path / "points.sqlite") as store:
        res = run_sweep([("tinycnn", fc2)], configs, tmp_path / "out", store=store,
                        grid=(0.0, 0.5, 0.9), seeds=1, tol=0.2, cache_dir=sim_cache_dir,
                        chunk=1, progress=False, client=client, echo=lambda s: None)
    assert res.ran > 4 and len(res.results) == 2
    starts: dict[str, list[float]] = {"_build_task": [], "_points_task": []}
    for task in ts.data:
        for ss in task["startstops"]:
            if ss["action"] == "compute":
                starts[task["key"].split("-", 1)[0]].append(ss["start"])
    assert len(starts["_build_task"]) == 4 and len(starts["_points_task"]) >= 4
    assert max(starts["_build_task"]) < min(starts["_points_task"]), starts


def _worker_config(keys):
    import dask

    return [dask.config.get(k) for k in keys]


def test_local_cluster_quiets_dask_background_work():
    """The local cluster's workers and scheduler run with LOCAL_CLUSTER_CONFIG (no stack
    profiler, slow ticks and monitors); the caller's configuration is back afterwards."""
    import dask

    from codesign.sweep import LOCAL_CLUSTER_CONFIG, connect

    keys = list(LOCAL_CLUSTER_CONFIG)
    want = [LOCAL_CLUSTER_CONFIG[k] for k in keys]
    before = [dask.config.get(k) for k in keys]
    assert before != want
    with connect(None, 2) as client:
        got = client.run(_worker_config, keys)
        assert len(got) == 2 and all(v == want for v in got.values()), got
        assert _worker_config(keys) == want          # the in-process scheduler and nannies
    assert [dask.config.get(k) for k in keys] == before


def test_colliding_output_names_are_made_distinct():
    from codesign.sweep import _distinct

    # models "a.b" (layer "c") and "a_b" (layer "c") both sanitise to a_b_c
    assert _distinct(["a_b_c", "a_b_c", "a_b_c_2", "x", "a_b_c"]) == [
        "a_b_c", "a_b_c_3", "a_b_c_2", "x", "a_b_c_4"]
    assert _distinct(["summary_m", "summary_n"]) == ["summary_m", "summary_n"]


def test_a_model_bundle_or_ratio_given_twice_is_swept_once(tmp_path, monkeypatch):
    """``--model tinycnn --model tinycnn`` ran and reported every layer twice (8 break-even
    rows for 4 layers); the same bundle by two paths, and a repeated ratio, likewise."""
    import codesign.sweep_cmd as sweep_cmd
    from codesign.cli import main

    (tmp_path / "b").mkdir()
    got = {}
    monkeypatch.setattr(sweep_cmd, "_run", lambda **kw: got.update(kw))
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "--model", "tinycnn", "--model", "lenet5", "--model", "tinycnn",
                 "--bundle", "b", "--bundle", "./b", "--bundle", str(tmp_path / "b"),
                 "--ratios", "0,0.5,0.5,0.9", "--out", "o"]) == 0
    assert got["chosen_models"] == ("tinycnn", "lenet5")
    assert [str(b) for b in got["bundles"]] == ["b"]
    assert got["ratio_grid"] == [0.0, 0.5, 0.9]


def test_no_runnable_layer_is_a_user_error_before_anything_is_written(tmp_path, capsys):
    """It was exit status 1, without the reason, after the store was created."""
    from codesign.cli import main

    assert main(["sweep", "--model", "tinycnn", "--layers", "fc2", "--engine", "pattern",
                 "--ratios", "0,0.5", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == (
        "codesign: error: no layer can run on the chosen engines: tinycnn: layer 'fc2': the "
        "pattern engine runs 3x3 conv2d layers, not a linear of shape (10, 48)")
    assert not (tmp_path / "o").exists()


def test_a_damaged_store_record_is_a_user_error(tmp_path, capsys, monkeypatch):
    """A record a rerun could not read was a StoreError traceback."""
    from codesign.cli import main
    from codesign.store import StoreError

    def damaged(*args, **kwargs):
        raise StoreError(f"results store {tmp_path}/o/points.sqlite: a record cannot be read "
                         "(bad JSON)")

    monkeypatch.setattr("codesign.sweep.run_sweep", damaged)
    assert main(["sweep", "--model", "tinycnn", "--ratios", "0,0.5", "--engine", "bcr",
                 "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"codesign: error: results store {tmp_path}/o/points.sqlite: a record cannot be read "
        "(bad JSON)")


def test_layers_of_one_shape_share_their_points_under_their_own_names(tmp_path, sim_cache_dir,
                                                                      require_simulator):
    """Each layer of a shape ran every point (resnet18's four layer1 convolutions: 4x the RTL
    work, and 'N points run' counted each), and a point reused from the store kept the name
    of the layer that ran it, in both points.csv files."""
    require_simulator("verilator")
    import dataclasses

    import pandas as pd

    from codesign.store import SQLiteStore
    from codesign.sweep import connect, model_layers, run_sweep
    from sim.breakeven import EngineConfig

    fc2 = next(s for s in model_layers("tinycnn") if s.name == "fc2")
    twins = [fc2, dataclasses.replace(fc2, name="fc2_twin")]
    kw = {"grid": (0.0, 0.5, 0.9), "seeds": 1, "tol": 0.2, "cache_dir": sim_cache_dir,
          "progress": False, "echo": lambda s: None}
    with connect(None, 1) as client, SQLiteStore(tmp_path / "points.sqlite") as store:
        both = run_sweep([("m", twins)], [EngineConfig("bcr")], tmp_path / "a", store=store,
                         client=client, **kw)
        assert both.ran == len(store) and len(store) >= 3          # each point once
        again = run_sweep([("m", twins[1:])], [EngineConfig("bcr")], tmp_path / "b",
                          store=store, client=client, **kw)
        stored = len(store)
    assert again.ran == 0 and again.reused > 0
    assert [be.ratio for _, be in both.results] == [be.ratio for _, be in again.results] * 2
    a = pd.read_csv(tmp_path / "a" / "points.csv")
    assert a.groupby("layer").size().to_dict() == {"fc2": stored, "fc2_twin": stored}
    assert set(pd.read_csv(tmp_path / "b" / "points.csv").layer) == {"fc2_twin"}



def test_summary_table_shows_the_time_break_even_when_fmax_was_given():
    from codesign.sweep import Combo, summary_table
    from sim.breakeven import BreakEven, EngineConfig, LayerSpec

    cfg = EngineConfig("unstructured", lanes=8)
    spec = LayerSpec("fc1", "linear", (48, 64))
    timed = BreakEven("fc1", cfg, 0.445, 0.453, 0.698, 30, (), 0.445, fmax_mhz=(51.2, 68.0))
    df = summary_table([(Combo("m", spec, cfg), timed)], "m")
    assert df.iloc[0].to_dict() == {"layer": "fc1", "shape": "48x64", cfg.label: "0.445",
                                    f"{cfg.label} storage": "0.453",
                                    f"{cfg.label} time": "0.698"}
    plain = BreakEven("fc1", cfg, 0.445, 0.453, None, 30, (), 0.445)
    assert f"{cfg.label} time" not in summary_table([(Combo("m", spec, cfg), plain)], "m")
    from codesign.sweep import breakeven_table

    rows = breakeven_table([(Combo("m", spec, cfg), timed), (Combo("m", spec, cfg), plain)])
    assert list(rows.fmax_sparse_mhz) == [51.2, ""] and list(rows.fmax_dense_mhz) == [68.0, ""]
