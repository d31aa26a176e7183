"""Synthesis: Yosys / nextpnr flows for the emitted engines and parsers for their reports.

``synth_reports`` turns an engine's Verilog into LUT/FF/BRAM/DSP counts and Fmax, so cycle counts
become seconds. It imports ``hw``; never torch.
"""
