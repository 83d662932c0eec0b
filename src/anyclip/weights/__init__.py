"""Pretrained registry, checkpoint I/O, hub download and the open_clip <-> anyclip weight mapping."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".checkpoint": ("CheckpointError", "read_state_dict", "save_safetensors"),
    ".export": ("load_checkpoint", "save_open_clip_checkpoint"),
    ".hub": ("WeightsUnavailableError", "hf_download"),
    ".mapping": ("WeightMismatchError", "export_state_dict", "load_state_dict"),
    ".pretrained": ("PretrainedEntry", "UnknownPretrainedError", "get_pretrained_cfg", "is_pretrained_cfg",
                    "list_pretrained", "list_pretrained_models_by_tag", "list_pretrained_tags_by_model"),
    ".push": ("push_to_hf_hub",),
    ".reparameterize": ("reparameterize",),
})
