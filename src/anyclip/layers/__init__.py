"""Shared building blocks, each defined once: attention, MLPs, norms, convolution, drop-path, positions, pools.

Every tower builds from these. Names follow open_clip / timm module names (``ln_1``, ``attn.in_proj``,
``mlp.c_fc``...) so weight-name tables stay short; :mod:`anyclip.layers.backend` decides backend fast paths.
"""
