"""Mobile code generation: an ``ir`` layer in, C kernels (scalar and NEON) out.

``mobile`` owns the C generators specialised to each pruned layer, the host and aarch64 builds,
the checks against the ``ir`` golden model and the cost measurements. It imports ``ir``; never
torch.
"""
