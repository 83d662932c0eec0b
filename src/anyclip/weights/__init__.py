"""Pretrained registry, checkpoint I/O, hub download and the open_clip <-> anyclip weight mapping."""

from .checkpoint import CheckpointError, read_state_dict, save_safetensors
from .export import load_checkpoint, save_open_clip_checkpoint
from .hub import WeightsUnavailableError, hf_download
from .mapping import WeightMismatchError, export_state_dict, load_state_dict
from .pretrained import (
    PretrainedEntry,
    UnknownPretrainedError,
    get_pretrained_cfg,
    is_pretrained_cfg,
    list_pretrained,
    list_pretrained_models_by_tag,
    list_pretrained_tags_by_model,
)
from .push import push_to_hf_hub

__all__ = ["CheckpointError", "PretrainedEntry", "UnknownPretrainedError", "WeightMismatchError",
           "WeightsUnavailableError", "export_state_dict", "get_pretrained_cfg", "hf_download", "is_pretrained_cfg",
           "list_pretrained", "list_pretrained_models_by_tag", "list_pretrained_tags_by_model", "load_checkpoint",
           "load_state_dict", "push_to_hf_hub", "read_state_dict", "save_open_clip_checkpoint", "save_safetensors"]
