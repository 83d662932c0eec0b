"""Drop-in faces of other CLIP libraries, so their users switch to anyclip by changing an import.

- :mod:`anyclip.compat.clip`: OpenAI's ``clip`` package (``available_models``, ``load``, ``tokenize``).
- :mod:`anyclip.compat.open_clip_jax`: open_clip_jax's ``CLIPInference``.
- :mod:`anyclip.compat.tfclip`: tfclip's ``create_model_and_transforms`` and its functional Keras model.

Each submodule is imported on its own (``import anyclip.compat.clip as clip``); none is loaded here.
"""
