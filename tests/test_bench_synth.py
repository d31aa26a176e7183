"""bench/synth.py's break-even reading of a speedup curve."""

from __future__ import annotations

from bench.synth import _break_even


def test_break_even_interpolates_the_first_crossing():
    assert _break_even([0.5, 0.6, 0.7], [0.8, 0.9, 1.1]) == "0.6500"
    assert _break_even([0.5, 0.6], [1.0, 2.0]) == "<= 0.5"     # at or below the grid
    assert _break_even([0.5, 0.6], [0.5, 0.9]) == "none (> 0.6)"
    assert _break_even([0.1, 0.2, 0.3, 0.4], [0.5, 1.5, 0.9, 2.0]) == "0.1500"
