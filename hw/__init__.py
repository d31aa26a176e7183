"""Hardware generation: an ``ir`` layer and an engine configuration in, Verilog out.

``hw`` owns the Amaranth engines (dense and sparse MAC engines, RNN cells), each as a
``wiring.Component`` with its exact cycle model beside it, and the Verilog emitter with its JSON
sidecar. It imports amaranth, numpy and ``ir``; never torch.
"""
