"""codesign.atomic: files appear whole or not at all; codesign.options: output path checks."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from codesign.atomic import atomic_write, write_csv
from codesign.options import file_problem, folder_problem


def test_atomic_write_creates_folders_and_keeps_the_suffix(tmp_path):
    seen = []

    def write(tmp):
        seen.append(tmp)
        tmp.write_text("data")

    path = atomic_write(tmp_path / "a" / "b" / "plot.png", write)
    assert path == tmp_path / "a" / "b" / "plot.png" and path.read_text() == "data"
    assert seen[0].suffix == ".png" and seen[0].parent == path.parent and not seen[0].exists()
    assert [p.name for p in path.parent.iterdir()] == ["plot.png"]


@pytest.mark.parametrize("error", [RuntimeError("disk"), KeyboardInterrupt()])
def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, error):
    path = tmp_path / "t.csv"
    path.write_text("old")

    def write(tmp):
        tmp.write_text("half")
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, write)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_written_files_have_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        path = atomic_write(tmp_path / "t.json", lambda tmp: tmp.write_text("{}"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640            # not mkstemp's 0600


def test_write_csv_round_trips_without_index(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    path = write_csv(df, tmp_path / "t.csv")
    assert path.read_text() == "a,b\n1,x\n2,y\n"


def test_output_path_problems(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert folder_problem(tmp_path / "new" / "deeper") is None
    assert folder_problem(afile) == f"'{afile}' is a file, not a folder"
    assert folder_problem(afile / "x") == (f"'{afile}' cannot hold folder '{afile / 'x'}': it is "
                                           "a file, not a folder")
    assert file_problem(tmp_path / "new" / "t.csv") is None
    assert file_problem(afile) is None                      # an existing file is overwritten
    assert file_problem(tmp_path) == f"'{tmp_path}' is a folder, not a file"
    assert file_problem(afile / "t.csv") == f"'{afile}' is a file, not a folder"


def test_a_folder_in_the_way_is_named_not_the_temporary_file(tmp_path):
    (tmp_path / "summary.json").mkdir()
    with pytest.raises(IsADirectoryError) as exc:
        atomic_write(tmp_path / "summary.json", lambda tmp: tmp.write_text("{}"))
    assert exc.value.filename == str(tmp_path / "summary.json")     # was .summary.XXXX.json
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
