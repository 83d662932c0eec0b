"""torch ``Linear`` as a Keras layer: host-initialised ``Dense`` with a fused bias add on torch."""

from __future__ import annotations

import keras
from keras import ops

from . import backend
from .init import constant_init, normal_init

# torch ``Linear`` keys -> attribute path on a :class:`Linear`, transform (anyclip.weights.mapping); a layer
# without bias has no ``bias`` row.
LINEAR_TABLE = (("weight", "kernel", "linear"), ("bias", "bias", None))


@keras.saving.register_keras_serializable(package="anyclip")
class Linear(keras.layers.Dense):
    """``keras.layers.Dense`` whose bias add is fused into the matmul on the torch backend, and whose inputs are
    made 2-D on JAX's CPU backend.

    Keras runs torch eagerly, so ``matmul`` then ``add`` are two kernels and a full extra pass over the
    activations; ``torch.nn.functional.linear`` does both in one GEMM (the kernel is passed as a
    transposed view, no copy). Other backends compile the graph and fuse it themselves. On XLA:CPU the forward
    pass is the same GEMM either way (same values), but the kernel's gradient of a ``[batch, tokens, width]``
    input contracts two axes and runs slower than over the flattened rows (a ViT-B-32 MLP's forward + backward
    at batch 32: 755 ms 3-D, 718 ms 2-D).
    """

    def call(self, inputs, training=None):
        plain = self.lora_rank is None and self.quantization_mode is None
        if backend.TORCH and self.bias is not None and plain:
            dtype = inputs.dtype
            return backend.linear(inputs, ops.cast(self.kernel, dtype), ops.cast(self.bias, dtype))
        shape = tuple(inputs.shape)
        if len(shape) > 2 and None not in shape and plain and backend.jax_on_cpu():
            out = super().call(ops.reshape(inputs, (-1, shape[-1])), training=training)
            return ops.reshape(out, (*shape[:-1], out.shape[-1]))
        return super().call(inputs, training=training)




def dense(units: int, std: float, seed: int | None, name: str, dtype=None, bias: bool = True) -> Linear:
    """A Dense layer (torch ``Linear``) with normal(std) kernel and zero bias (none if not ``bias``),
    initialised on the host.

    Example:
        >>> dense(4, 0.02, 0, "q", bias=False).use_bias
        False
    """
    return Linear(units, use_bias=bias, kernel_initializer=normal_init(std, seed, name),
                  bias_initializer=constant_init(0.0), name=name, dtype=dtype)
