"""The contract every tower keeps (:func:`check_tower`) and one tiny CLIP per registered family (:data:`TINY`).

``TINY[family]`` is a whole CLIP config whose tower of that family's modality is a small member of the family
(the other tower a minimal native one). A Hugging Face family's ``text_cfg.hf_config`` holds the values of its
``config.json``: :func:`tiny_config` writes them to a local folder (offline, as ``hf_reference.py`` does for the
shipped configs) and points ``hf_model_name`` at it. A family added to ``anyclip.towers.registry.FAMILIES``
needs an entry here: ``tests/test_towers.py`` fails until it has one.

The contract (:func:`check_tower`, on the current Keras backend):

- the model builds the family's tower class, and the registry maps the tower's config back to the family;
- the output is ``[batch, embed_dim]``, equal to ``output_width`` and ``compute_output_shape``;
- ``get_config`` / ``from_config`` give the same config and, on the same weights, the same outputs;
- a ``.keras`` save / ``keras.saving.load_model`` round trip of the whole CLIP model gives the same outputs;
- the weight table names every variable of the tower, each once; the model's open_clip state dict
  (``export_state_dict``) has open_clip's own keys and shapes for that config, loads back strictly
  (``load_state_dict``) into a differently initialised model with the same outputs, and strictly into open_clip;
- ``set_grad_checkpointing(True)`` leaves the training-mode outputs unchanged (``gradients=True``: the
  gradients too, on JAX);
- ``lock(0)`` leaves trainable exactly what open_clip's ``lock(0)`` does: nothing for the native towers, only
  the head / projection for timm and Hugging Face towers (open_clip freezes their trunk / encoder only); the
  other tower stays as it was.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
from model_pairs import open_clip_model

TEXT = {"context_length": 16, "vocab_size": 512, "width": 32, "heads": 2, "layers": 1}
VISION = {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16}

# Tiny Hugging Face configs (config.json values, written by tiny_hf_dir): two layers, a 120-token vocabulary.
ROBERTA = dict(model_type="roberta", vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=48, max_position_embeddings=40, type_vocab_size=1, layer_norm_eps=1e-5)
MT5 = dict(model_type="mt5", vocab_size=120, d_model=32, d_kv=8, d_ff=40, num_layers=2, num_heads=4,
           relative_attention_num_buckets=8, relative_attention_max_distance=12, feed_forward_proj="gated-gelu")
M2M = dict(model_type="m2m_100", vocab_size=120, d_model=32, encoder_layers=2, decoder_layers=1,
           encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48,
           max_position_embeddings=40)


def _image(vision_cfg, custom_text=False):
    cfg = {"embed_dim": 16, "vision_cfg": vision_cfg, "text_cfg": dict(TEXT)}
    return {**cfg, "custom_text": True} if custom_text else cfg


def _hf_text(hf_config, **options):
    return {"embed_dim": 16, "vision_cfg": dict(VISION),
            "text_cfg": {"hf_config": hf_config, "hf_model_pretrained": False, "context_length": 20, **options}}


def _timm(name, image_size, **fields):
    return {"timm_model_name": name, "timm_model_pretrained": False, "image_size": image_size, **fields}


# family -> a small CLIP config whose tower of that family's modality belongs to the family (no dropout or
# stochastic depth: training-mode outputs must be deterministic; timm's Swin defaults to drop_path 0.1).
TINY = {
    "vit": _image({**VISION, "layers": 2}),
    "modified_resnet": _image({"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16}),
    # (open_clip builds timm ViT-like trunks at their own image size: these keep it)
    "timm_vit": _image(_timm("vit_base_patch32_siglip_256", 256, timm_pool="map", timm_proj="linear",
                             timm_model_kwargs={"depth": 1}), custom_text=True),
    "timm_eva": {**_image(_timm("vit_pe_core_tiny_patch16_384", 384, timm_pool="map", timm_proj=None,
                                timm_model_kwargs={"depth": 1}), custom_text=True), "embed_dim": 512},
    "timm_fastvit": _image(_timm("fastvit_mci0", 64, timm_pool="avg", timm_proj=None,
                                 timm_model_kwargs={"layers": [1, 1, 1, 1]}), custom_text=True),
    "timm_convnext": _image(_timm("convnext_tiny", 64, timm_pool="", timm_proj="linear",
                                  timm_model_kwargs={"depths": [1, 1, 1, 1]})),
    "timm_swin": _image(_timm("swin_base_patch4_window7_224", 224, timm_pool="", timm_proj="linear",
                              timm_drop_path=0.0,
                              timm_model_kwargs={"depths": [1, 1, 1, 1], "embed_dim": 16, "num_heads": [1, 1, 2, 2]})),
    "text_transformer": {"embed_dim": 16, "vision_cfg": dict(VISION), "text_cfg": {**TEXT, "layers": 2}},
    "roberta": _hf_text(ROBERTA, hf_proj_type="mlp", hf_pooler_type="mean_pooler"),
    "t5": _hf_text(MT5, hf_proj_type="linear", hf_pooler_type="mean_pooler"),
    "m2m100": _hf_text(M2M, hf_proj_type="linear", hf_pooler_type=None),
}


def tiny_hf_dir(folder: Path, values: dict) -> str:
    """Write an HF ``config.json`` with ``values`` (``model_type`` included) to ``folder``; returns its path."""
    from transformers import AutoConfig
    values = dict(values)
    AutoConfig.for_model(values.pop("model_type"), **values).save_pretrained(str(folder))
    return str(folder)


def tiny_config(family: str, folder: Path) -> dict:
    """``TINY[family]`` ready to build: a Hugging Face config written under ``folder``."""
    cfg = copy.deepcopy(TINY[family])
    hf = cfg["text_cfg"].pop("hf_config", None)
    if hf is not None:
        cfg["text_cfg"]["hf_model_name"] = tiny_hf_dir(Path(folder) / f"hf-{family}", hf)
    return cfg


def tower_inputs(model, modality: str, batch: int = 2, seed: int = 0) -> np.ndarray:
    """Random inputs for ``model``'s tower of ``modality``: images, or token ids with an end token and padding."""
    rng = np.random.default_rng(seed)
    if modality == "image":
        h, w = model.image_size
        return rng.standard_normal((batch, h, w, 3)).astype(np.float32)
    tower = model.text
    vocab = getattr(tower, "vocab_size", None) or model.config.text_cfg.vocab_size
    ids = rng.integers(4, vocab - 1, size=(batch, model.context_length)).astype(np.int32)
    pad = getattr(tower, "pad_token_id", None)
    if pad is None:  # native tower: the end-of-text token is the largest id (argmax pooling)
        ids[:, 5] = vocab - 1
        ids[:, 6:] = 0
    else:
        ids[ids == pad] = 4
        ids[0, 7:] = pad
    return ids


def _numpy(x) -> np.ndarray:
    import keras
    return np.asarray(keras.ops.convert_to_numpy(x))


def _outputs_and_grads(tower, x, gradients: bool):
    """The tower's training-mode outputs and, with ``gradients`` (JAX only), the gradients of a weighted sum of
    them w.r.t. its trainable weights. On JAX a checkpointed tower runs compiled whole: op by op, JAX compiles
    each of the checkpointed blocks' primitives on its own (hundreds of compiles on Swin or FastViT)."""
    import keras
    if keras.backend.backend() != "jax" or not (gradients or tower.grad_checkpointing):
        return _numpy(tower(x, training=True)), []
    import jax
    trainable = [v.value for v in tower.trainable_variables]
    frozen = [v.value for v in tower.non_trainable_variables]

    def loss(t):
        out = tower.stateless_call(t, frozen, x, training=True)[0]
        return jax.numpy.sum(out * np.linspace(-1, 1, out.shape[-1], dtype=np.float32)), out

    if not gradients:
        return np.asarray(jax.jit(loss)(trainable)[1]), []
    grads, out = jax.jit(jax.grad(loss, has_aux=True))(trainable)
    return np.asarray(out), [np.asarray(g) for g in grads]


def _text_prefix(model) -> str:
    return "text." if (model.config.custom_text or getattr(model.text, "CUSTOM_TEXT", False)) else ""


def check_tower(family: str, cfg: dict, folder: Path, gradients: bool = False) -> None:
    """Check the tower contract (module docstring) for the ``family`` tower of the CLIP config ``cfg``.

    ``folder`` receives the ``.keras`` file. ``gradients=True`` (JAX) also compares the gradients with and
    without gradient checkpointing (compiling them takes most of the time on the convolutional towers).
    """
    import keras

    import anyclip
    from anyclip.towers.base import Tower
    from anyclip.towers.registry import family as registry_family
    from anyclip.towers.registry import tower_family
    from anyclip.weights import export_state_dict
    from anyclip.weights.mapping import load_state_dict, model_entries

    row = registry_family(family)
    model = anyclip.CLIP(cfg, seed=0)
    image = row.modality == "image"
    tower, other = (model.visual, model.text) if image else (model.text, model.visual)
    name = f"{family} ({type(tower).__name__})"

    # builds the family's tower, and the registry maps its config back to the family
    assert isinstance(tower, Tower) and type(tower) is row.tower_class(), name
    assert tower_family(tower.config) is row, name
    assert tower.MODALITY == row.modality, name

    # output [batch, embed_dim] = output_width = compute_output_shape
    x = tower_inputs(model, row.modality)
    out = _numpy(tower(x))
    assert tower.output_width == model.config.embed_dim, name
    assert out.shape == (len(x), tower.output_width) == tuple(tower.compute_output_shape(x.shape)), name
    assert np.isfinite(out).all(), name

    # get_config / from_config: the same tower
    config = tower.get_config()
    json.dumps(keras.saving.serialize_keras_object(tower))  # serialisable as a .keras file needs it
    clone = type(tower).from_config(config)
    clone.build()
    assert clone.get_config() == config, name
    assert [tuple(w.shape) for w in clone.weights] == [tuple(w.shape) for w in tower.weights], name
    clone.set_weights(tower.get_weights())
    np.testing.assert_array_equal(_numpy(clone(x)), out, err_msg=f"{name}: from_config clone")

    # .keras round trip of the whole model
    path = Path(folder) / f"{family}.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    assert isinstance(again, anyclip.CLIP) and type(again.visual) is type(model.visual), name
    np.testing.assert_array_equal(_numpy((again.visual if image else again.text)(x)), out,
                                  err_msg=f"{name}: .keras round trip")
    del again

    # weight table: every variable of the tower named, once; every checkpoint key used, both ways
    prefix = "visual." if image else _text_prefix(model)
    entries = tower.weight_entries(prefix)
    named = [id(v) for v, _ in entries.values()]
    variables = {id(v): v.path for v in tower.weights if "seed_generator" not in v.path}
    assert len(named) == len(set(named)), f"{name}: a variable has two open_clip names"
    unnamed = sorted(p for i, p in variables.items() if i not in set(named))
    assert not unnamed, f"{name}: variables missing from the weight table: {unnamed}"
    assert set(named) <= set(variables), f"{name}: the weight table names variables outside the tower"
    all_entries = model_entries(model)
    assert {k: id(v) for k, (v, _) in entries.items()} == {k: id(all_entries[k][0]) for k in entries}, name
    state = export_state_dict(model)
    assert set(entries) <= set(state), name
    fresh = anyclip.CLIP(cfg, seed=1)
    fresh_tower = fresh.visual if image else fresh.text
    assert not np.array_equal(_numpy(fresh_tower(x)), out), f"{name}: seeds 0 and 1 give the same tower"
    load_state_dict(fresh, state)  # strict: every key used, every variable set
    np.testing.assert_array_equal(_numpy(fresh_tower(x)), out, err_msg=f"{name}: export -> load_state_dict")
    del fresh, fresh_tower
    import torch
    ref = open_clip_model(cfg)
    theirs = ref.state_dict()
    assert set(state) == set(theirs), (f"{name}: keys differ from open_clip's: ours only "
                                       f"{sorted(set(state) - set(theirs))}, open_clip only "
                                       f"{sorted(set(theirs) - set(state))}")
    bad = {k: (state[k].shape, tuple(v.shape)) for k, v in theirs.items() if tuple(v.shape) != state[k].shape}
    assert not bad, f"{name}: shapes differ from open_clip's: {bad}"
    ref.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)

    # gradient checkpointing: the same outputs (and gradients)
    want = _outputs_and_grads(tower, x, gradients)
    tower.set_grad_checkpointing(True)
    assert tower.grad_checkpointing, name
    try:
        got = _outputs_and_grads(tower, x, gradients)
    finally:
        tower.set_grad_checkpointing(False)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6, err_msg=f"{name}: grad checkpointing")
    for g, w in zip(got[1], want[1]):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6, err_msg=f"{name}: grad checkpointing gradients")

    # lock(0): the tower's trainable weights are those open_clip's lock(0) leaves trainable (none for the
    # native towers; the head / projection for timm and Hugging Face towers, as open_clip); the other tower
    # is untouched
    def trainable_keys():
        ids = {id(v) for v in model.trainable_variables}
        return {k for k, (v, _) in entries.items() if id(v) in ids}

    others = len(other.trainable_weights)
    before = trainable_keys()
    assert before, name
    tower.lock(0)
    (ref.lock_image_tower if image else ref.lock_text_tower)(0)
    open_clip_left = {k for k, p in ref.named_parameters() if p.requires_grad and k in entries}
    left = trainable_keys()
    assert left == open_clip_left, (f"{name}: lock(0) leaves {sorted(left)} trainable, open_clip "
                                    f"{sorted(open_clip_left)}")
    assert len(left) < len(before), f"{name}: lock(0) froze nothing"
    assert {v.path for v in tower.trainable_weights} == {entries[k][0].path for k in left}, name
    assert len(other.trainable_weights) == others, f"{name}: lock(0) changed the other tower"
