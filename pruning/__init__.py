"""Model compression: a torch model and a plan in, an ``ir`` bundle out.

``pruning`` owns the scheme projections, the ADMM engine, quantization, masked retraining, the
data-free mode, the model zoo and the offline datasets. It may import torch and ``ir``; it never
imports amaranth or cocotb.
"""
