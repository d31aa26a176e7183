"""Mobile code generation: an ``ir`` layer in, C kernels (NEON and portable vectors) out.

``mobile`` owns the C generators specialised to each pruned layer, the host and aarch64 builds,
the checks against the ``ir`` golden model and the cost measurements. It imports numpy and
``ir``; never torch.

Modules: :mod:`mobile.gen_linear` (dense, CSR, BCR matrix-vector), :mod:`mobile.gen_conv`
(dense and pattern convolution), :mod:`mobile.gen_rnn` (LSTM/GRU steps), :mod:`mobile.requant`
(int8 output stage), :mod:`mobile.csrc` (vector layer, runtime, harness main),
:mod:`mobile.source` (generated source + data), :mod:`mobile.build` (builds, the
:func:`~mobile.build.build_kernel` API), :mod:`mobile.harness` (run, time),
:mod:`mobile.check` (golden checks), :mod:`mobile.reference` (float64 references),
:mod:`mobile.cost` (qemu instruction counts, llvm-mca band), :mod:`mobile.layers` (bundle layer
-> kernels), :mod:`mobile.run` (one layer end to end), :mod:`mobile.toolchain` (tool checks).
"""
