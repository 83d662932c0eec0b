"""anyclip: every OpenCLIP model on JAX, PyTorch and TensorFlow from one Keras 3 code base.

Quick start::

    import anyclip
    model, _, preprocess = anyclip.create_model_and_transforms("ViT-B-32", pretrained="laion2b_s34b_b79k")
    tokenizer = anyclip.get_tokenizer("ViT-B-32")
    image = preprocess(anyclip.load_image("cat.jpg"))[None]
    probs = anyclip.zero_shot_probs(model, image, tokenizer(["a cat", "a dog"]))

The Keras backend comes from ``KERAS_BACKEND``; when unset anyclip picks jax, then torch, then
tensorflow, whichever is installed.
"""

from ._backend import choose_default_backend

choose_default_backend()

from .factory import (  # noqa: E402
    create_model,
    create_model_and_transforms,
    create_model_from_pretrained,
    get_tokenizer,
    list_models,
)
from .models import CLIP, CLIPConfig, CoCa, ConfigError, TextConfig, VisionConfig  # noqa: E402
from .weights import (  # noqa: E402
    WeightMismatchError,
    WeightsUnavailableError,
    export_state_dict,
    get_pretrained_cfg,
    list_pretrained,
    list_pretrained_models_by_tag,
    list_pretrained_tags_by_model,
    load_checkpoint,
    push_to_hf_hub,
    read_state_dict,
    save_open_clip_checkpoint,
)
from .zero_shot import (  # noqa: E402
    IMAGENET_CLASSNAMES,
    OPENAI_IMAGENET_TEMPLATES,
    SIMPLE_IMAGENET_TEMPLATES,
    build_zero_shot_classifier,
    zero_shot_probs,
)

from .tokenizers import CLIPTokenizer, HFTokenizer, SimpleTokenizer, decode_captions  # noqa: E402
from .transforms import ImageLoadError, PreprocessConfig, image_transform, load_image  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "CLIP", "CLIPConfig", "CLIPTokenizer", "CoCa", "ConfigError", "HFTokenizer", "IMAGENET_CLASSNAMES",
    "ImageLoadError", "OPENAI_IMAGENET_TEMPLATES", "PreprocessConfig", "SIMPLE_IMAGENET_TEMPLATES",
    "SimpleTokenizer", "TextConfig", "VisionConfig", "WeightMismatchError", "WeightsUnavailableError",
    "build_zero_shot_classifier", "create_model", "create_model_and_transforms", "create_model_from_pretrained",
    "decode_captions", "export_state_dict", "get_pretrained_cfg", "get_tokenizer", "image_transform", "list_models",
    "list_pretrained", "list_pretrained_models_by_tag", "list_pretrained_tags_by_model", "load_checkpoint",
    "load_image", "push_to_hf_hub", "read_state_dict", "save_open_clip_checkpoint", "zero_shot_probs",
]
