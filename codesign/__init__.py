"""The closed loop and the command line.

``codesign`` owns the ``codesign`` command, the flow steps that chain compression, hardware
generation, simulation, synthesis and mobile code generation, sweeps, results and reports. It is
the only package that may import every other one.
"""
__version__ = "0.1.0"
