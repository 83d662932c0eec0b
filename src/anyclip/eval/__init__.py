"""Evaluation: zero-shot classification, zero-shot retrieval and linear probes, on any Keras backend.

Numbers comparable with OpenCLIP's results tables and clip_benchmark: the same prompts-to-classifier
construction, the same metrics and metric names, results as clip_benchmark-style JSON::

    import anyclip
    from anyclip.data.labelled import read_image_folder
    from anyclip.eval import zero_shot_classification, write_results_json

    model, _, preprocess = anyclip.create_model_and_transforms("ViT-B-32", pretrained="laion2b_s34b_b79k")
    tokenizer = anyclip.get_tokenizer("ViT-B-32")
    result = zero_shot_classification(model, tokenizer, read_image_folder("imagenet/val"), classnames=
                                      anyclip.IMAGENET_CLASSNAMES, templates="imagenet")
    print(result.metrics)   # {'acc1': ..., 'acc5': ..., 'mean_per_class_recall': ...}

The pure metric functions (:mod:`anyclip.eval.metrics`) take feature or score arrays, for use inside a
training loop. Ranking, ties, several captions per image and classes without samples are defined there.
"""

from .features import (
                      FeatureCache,
                      Features,
                      encode_images,
                      encode_labelled,
                      encode_texts,
)
from .linear_probe import C_GRID, fit_linear_probe, linear_probe
from .metrics import (
                      classification_metrics,
                      confusion_matrix,
                      mean_per_class_recall,
                      retrieval_metrics,
                      retrieval_ranks,
                      target_ranks,
                      topk_accuracy,
)
from .report import EvalResult, format_summary, save_confusion_png, write_results_json
from .retrieval import zero_shot_retrieval
from .zero_shot import read_templates, zero_shot_classification

__all__ = ["C_GRID", "EvalResult", "FeatureCache", "Features", "classification_metrics", "confusion_matrix",
           "encode_images", "encode_labelled", "encode_texts", "fit_linear_probe", "format_summary", "linear_probe",
           "mean_per_class_recall", "read_templates", "retrieval_metrics", "retrieval_ranks", "save_confusion_png",
           "target_ranks", "topk_accuracy", "write_results_json", "zero_shot_classification", "zero_shot_retrieval"]
