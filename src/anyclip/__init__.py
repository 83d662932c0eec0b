"""anyclip: every OpenCLIP model on JAX, PyTorch and TensorFlow from one Keras 3 code base.

Quick start::

    import anyclip
    model, _, preprocess = anyclip.create_model_and_transforms("ViT-B-32", pretrained="laion2b_s34b_b79k")
    tokenizer = anyclip.get_tokenizer("ViT-B-32")
    image = preprocess(anyclip.load_image("cat.jpg"))[None]
    probs = anyclip.zero_shot_probs(model, image, tokenizer(["a cat", "a dog"]))

Which backend: ``KERAS_BACKEND`` wins; else the backend of an already imported ``keras``; else the first
installed of jax, torch, tensorflow. ``~/.keras/keras.json`` never decides (Keras writes "tensorflow" there
on first import). ``anyclip.backend_choice()`` and ``anyclip info`` say which backend runs and why::

    >>> anyclip.backend_choice()  # doctest: +SKIP
    BackendChoice(name='jax', reason='first installed of jax, torch, tensorflow')
"""

import sys as _sys
from importlib import import_module as _import_module

from ._backend import BackendChoice, choose_default_backend, current_backend_choice
from ._lazy import after_import, lazy_exports

_BACKEND_AT_IMPORT = choose_default_backend()  # decided once, before anything can import Keras through anyclip


def backend_choice() -> BackendChoice:
    """The Keras backend anyclip runs on and why it was chosen: ``(name, reason)``.

    Example:
        >>> import anyclip
        >>> anyclip.backend_choice().name in ("jax", "torch", "tensorflow")
        True
    """
    return current_backend_choice(_BACKEND_AT_IMPORT)


# Names load from their modules on first use: `import anyclip` (and `anyclip --help`) imports no Keras.
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".factory": ("create_model", "create_model_and_transforms", "create_model_from_pretrained", "get_tokenizer",
                 "list_models"),
    ".models": ("CLIP", "CLIPConfig", "CoCa", "ConfigError", "TextConfig", "VisionConfig"),
    ".weights": ("WeightMismatchError", "WeightsUnavailableError", "export_state_dict", "is_pretrained_cfg",
                 "list_pretrained", "list_pretrained_models_by_tag", "list_pretrained_tags_by_model",
                 "load_checkpoint", "push_to_hf_hub", "read_state_dict", "save_open_clip_checkpoint"),
    ".zero_shot": ("IMAGENET_CLASSNAMES", "OPENAI_IMAGENET_TEMPLATES", "SIMPLE_IMAGENET_TEMPLATES",
                   "build_zero_shot_classifier", "zero_shot_probs"),
    ".tokenizers": ("CLIPTokenizer", "HFTokenizer", "decode_captions"),
    ".transforms": ("ImageLoadError", "PreprocessConfig", "load_image"),
    # open_clip 3.3.0's other public names (``import anyclip as open_clip``), each with open_clip's signature
    ".compat.open_clip_api": ("build_zero_shot_classifier_legacy", "convert_weights_to_fp16", "convert_weights_to_lp",
                              "image_transform", "load_openai_model", "push_pretrained_to_hf_hub", "trace_model"),
    ".models.config": ("add_model_config",),
    ".models.custom_text": ("CustomTextCLIP",),
    ".models.open_clip_cfg": ("CLIPTextCfg", "CLIPVisionCfg", "get_cast_dtype", "get_input_dtype", "get_model_config",
                              "get_model_preprocess_cfg", "get_model_tokenize_cfg", "set_model_preprocess_cfg"),
    ".models.preprocess": ("OPENAI_DATASET_MEAN", "OPENAI_DATASET_STD"),
    ".tokenizers.simple": ("SimpleTokenizer", "decode", "tokenize"),
    ".train.loss_modules": ("ClipLoss", "CoCaLoss", "DistillClipLoss", "create_loss"),
    ".transforms.aug_cfg": ("AugmentationCfg",),
    ".weights.download": ("download_pretrained", "download_pretrained_from_url", "get_pretrained_cfg",
                          "get_pretrained_url", "list_openai_models"),
})
__all__ = sorted([*__all__, "backend_choice"])


def _register_keras_classes() -> None:
    """Import the modules that define anyclip's Keras models, so ``keras.saving.load_model`` finds them.

    ``CLIP`` / ``CoCa.from_config`` build their towers from the saved config (importing each family's module
    through the registry), so registering the model classes is enough. When Keras is being imported by one of
    anyclip's own modules, that import chain is still running: importing more of anyclip now would re-enter it,
    and the chain registers what it imports itself.
    """
    if any(getattr(getattr(module, "__spec__", None), "_initializing", False)
           for name, module in list(_sys.modules.items()) if name.startswith(__name__ + ".")):
        return
    for module in (".models.clip", ".models.coca", ".models.custom_text", ".transforms.graph"):
        _import_module(module, __name__)


after_import("keras", _register_keras_classes)  # now, if Keras is loaded; else as soon as anything imports it

__version__ = "0.1.0"
