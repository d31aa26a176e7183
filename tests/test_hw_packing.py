"""hw.packing: memory images without amaranth, for the benches inside simulator processes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from hw.packing import pack_entry_words, pack_fields, pack_words, unpack_words


def test_pack_words_round_trip():
    rng = np.random.default_rng(0)
    for bits in (2, 5, 8, 16):
        vals = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(13, 4))
        words = pack_words(vals, bits)
        assert all(0 <= w < 1 << (4 * bits) for w in words)
        assert np.array_equal(unpack_words(words, bits, 4), vals)


def test_pack_fields_and_entries():
    assert pack_fields([[1, 2], [3, 0]], [2, 3]) == [1 | 2 << 2, 3]
    assert pack_entry_words([-1, 2], [3, 0], 4, 2) == [0xF | 3 << 4, 2]
    with pytest.raises(ValueError, match="does not fit in 2 unsigned bits"):
        pack_fields([[4]], 2)
    with pytest.raises(ValueError, match=r"Lane values must lie in \[-8, 7\]"):
        pack_words([[8]], 4)


def test_old_homes_reexport():
    import hw.bcr
    import hw.dense
    import hw.unstructured

    assert hw.dense.pack_words is pack_words and hw.dense.unpack_words is unpack_words
    assert hw.bcr.pack_fields is pack_fields
    assert hw.unstructured.pack_entry_words is pack_entry_words


def test_benches_start_without_amaranth():
    """Every simulator process imports its bench: it must not pay for amaranth's import."""
    code = ("import sys, sim.dense_tb, sim.bcr_tb, sim.unstructured_tb, sim.pattern_tb, "
            "sim.rnn_tb; print('amaranth' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_pack_words_with_64_bit_fields():
    """The 64-bit mask did not fit int64: OverflowError for any value (engines allow 64-bit
    accumulators, and unpack_words takes the width)."""
    rows = [[1, -1], [-2**63, 2**63 - 1]]
    words = pack_words(rows, 64)
    assert words == [0xFFFFFFFFFFFFFFFF_0000000000000001, 0x7FFFFFFFFFFFFFFF_8000000000000000]
    assert unpack_words(words, 64, 2).tolist() == rows
