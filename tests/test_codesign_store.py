"""Tests of codesign.store: SQLite (WAL) points store, one row per key."""

from __future__ import annotations

import multiprocessing
import sqlite3
from dataclasses import replace

import pytest

from codesign.store import SQLiteStore, StoreError
from sim.breakeven import Point, Store


def _point(key: str, ratio: float = 0.5, seed: int = 0) -> Point:
    return Point(key=key, layer="fc", op="linear", shape=(10, 48), engine="unstructured",
                 lanes=8, weight_bits=8, act_bits=8, ratio=ratio, seed=seed, nnz=240, numel=480,
                 sparse_cycles=120, dense_cycles=98, sparse_model_cycles=120,
                 dense_model_cycles=98, sparse_storage_bits=3000, dense_storage_bits=3840,
                 positions=1, simulator="verilator", tools=(("cocotb", "2.1.0"),), index_bits=4)


def test_put_get_round_trip_and_protocol(tmp_path):
    with SQLiteStore(tmp_path / "s" / "points.sqlite") as store:
        assert isinstance(store, Store)
        assert store.get("a") is None
        assert store.put([_point("a"), _point("b", 0.6)]) == 2
        assert store.get("a") == _point("a")
        assert len(store) == 2 and store.keys() == {"a", "b"}
        assert [p.key for p in store.points()] == ["a", "b"]


def test_a_key_is_stored_once(tmp_path):
    path = tmp_path / "points.sqlite"
    with SQLiteStore(path) as store:
        store.put([_point("a")])
        # same key again (even with other contents) and a duplicate inside one batch
        assert store.put([replace(_point("a"), sparse_cycles=1), _point("c"), _point("c")]) == 1
        assert store.get("a").sparse_cycles == 120
    with SQLiteStore(path) as again:                       # reopened: the data is there
        assert len(again) == 2


def test_wal_mode(tmp_path):
    path = tmp_path / "points.sqlite"
    SQLiteStore(path).close()
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def _writer(path: str, start: int) -> None:
    with SQLiteStore(path) as store:
        for i in range(40):
            store.put([_point(f"k{(start + i) % 60}")])


def test_concurrent_writers_never_duplicate(tmp_path):
    path = str(tmp_path / "points.sqlite")
    SQLiteStore(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, s)) for s in (0, 20)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with SQLiteStore(path) as store:
        assert store.keys() == {f"k{i}" for i in range(60)} and len(store) == 60


def test_unreadable_store_is_a_clear_error(tmp_path):
    bad = tmp_path / "points.sqlite"
    bad.write_text("this is not a database " * 100)
    with pytest.raises(StoreError, match=f"cannot open the results store {bad}"):
        SQLiteStore(bad)


def test_other_schema_is_refused(tmp_path):
    path = tmp_path / "points.sqlite"
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE name = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="has schema '99'; this version reads schema 1"):
        SQLiteStore(path)


def test_another_programs_points_table_is_refused(tmp_path):
    """It opened, and the first query was sqlite3.OperationalError 'no such column: record'."""
    path = tmp_path / "points.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE points (key TEXT PRIMARY KEY, value REAL)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=f"^results store {path}: its table 'points' has columns "
                                         "key, value; not a store of break-even points$"):
        SQLiteStore(path)


def test_a_store_path_that_cannot_be_a_file(tmp_path):
    """A file in the way of its folder was '/x/afile: File exists', from the command line."""
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(StoreError, match=f"^cannot open the results store {tmp_path}/afile/x.sqlite: "
                                         f"'{tmp_path}/afile' is a file, not a folder$"):
        SQLiteStore(tmp_path / "afile" / "x.sqlite")
    with pytest.raises(StoreError, match=f"'{tmp_path}' is a folder, not a file$"):
        SQLiteStore(tmp_path)
