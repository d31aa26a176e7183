"""The results store of break-even sweeps: one SQLite database in WAL mode.

Every :class:`sim.breakeven.Point` is one row keyed by :attr:`Point.key` (a hash of everything
that determines it), so a point is stored at most once whatever the number of writers or reruns
(``INSERT OR IGNORE`` in one transaction per batch). A process killed at any moment leaves the
database as of its last committed batch: SQLite's write-ahead log makes each commit atomic. The
row keeps the point's main fields as columns (for queries) and its whole record as JSON.

:class:`SQLiteStore` implements the :class:`sim.breakeven.Store` protocol.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from sim.breakeven import Point

__all__ = ["SQLiteStore", "StoreError", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
_COLUMNS = ("layer", "engine", "lanes", "weight_bits", "act_bits", "ratio", "seed", "nnz",
            "sparse_cycles", "dense_cycles", "simulator")


class StoreError(RuntimeError):
    """A store that cannot be opened or read; the message names the file."""


class SQLiteStore:
    """Points in an SQLite database (WAL mode), created if missing.

    Parameters
    ----------
    path : path
        The database file; its folder is created.
    timeout : float
        Seconds to wait for another writer's lock.
    """

    def __init__(self, path: str | os.PathLike, timeout: float = 60.0) -> None:
        self.path = Path(path)
        from codesign.options import file_problem

        problem = file_problem(self.path)
        if problem is not None:
            raise StoreError(f"cannot open the results store {self.path}: {problem}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            cols = ", ".join(f"{c} {'TEXT' if c in ('layer', 'engine', 'simulator') else 'REAL' if c == 'ratio' else 'INTEGER'}"
                             for c in _COLUMNS)
            self._db.execute(f"CREATE TABLE IF NOT EXISTS points (key TEXT PRIMARY KEY, {cols}, "
                             "record TEXT NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, "
                             "value TEXT NOT NULL)")
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)",
                             (str(SCHEMA_VERSION),))
            row = self._db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            columns = [r[1] for r in self._db.execute("PRAGMA table_info(points)")]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the results store {self.path}: {exc}") from None
        except OSError as exc:      # its folder cannot be made: a file in the way, no permission
            raise StoreError(f"cannot open the results store {self.path}: {exc.filename}: "
                             f"{exc.strerror}") from None
        if columns != ["key", *_COLUMNS, "record"]:     # another program's table 'points'
            self._db.close()
            raise StoreError(f"results store {self.path}: its table 'points' has columns "
                             f"{', '.join(columns)}; not a store of break-even points")
        if row is None or row[0] != str(SCHEMA_VERSION):
            raise StoreError(f"results store {self.path} has schema {row and row[0]!r}; this "
                             f"version reads schema {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, key: str) -> Point | None:
        """The point stored under ``key``, or None."""
        row = self._db.execute("SELECT record FROM points WHERE key = ?", (key,)).fetchone()
        return None if row is None else self._point(row[0])

    def put(self, points: Iterable[Point]) -> int:
        """Store ``points`` in one transaction; keys already stored are left alone.

        Returns
        -------
        int
            How many points were new.
        """
        rows = [(p.key, *(getattr(p, c) for c in _COLUMNS),
                 json.dumps(p.to_json(), sort_keys=True)) for p in points]
        if not rows:
            return 0
        marks = ", ".join("?" * (len(_COLUMNS) + 2))
        try:
            self._db.execute("BEGIN IMMEDIATE")
            before = self._db.total_changes
            self._db.executemany(f"INSERT OR IGNORE INTO points VALUES ({marks})", rows)
            new = self._db.total_changes - before
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return new

    def keys(self) -> set[str]:
        """Every stored key."""
        return {k for (k,) in self._db.execute("SELECT key FROM points")}

    def points(self) -> Iterator[Point]:
        """Every stored point, in key order."""
        for (rec,) in self._db.execute("SELECT record FROM points ORDER BY key"):
            yield self._point(rec)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM points").fetchone()[0])

    def _point(self, record: str) -> Point:
        try:
            return Point.from_json(json.loads(record))
        except (ValueError, TypeError) as exc:
            raise StoreError(f"results store {self.path}: a record cannot be read ({exc})"
                             ) from None
