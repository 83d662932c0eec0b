"""Evaluation during training: zero-shot accuracy, image-text retrieval and the shapes tasks, every N epochs.

* ``--zeroshot-data`` (an ImageFolder tree, a labelled CSV or WebDataset shards, as ``anyclip eval``
  reads them; ``--imagenet-val`` is the same with ImageNet's class names and 80 templates): top-1, top-5
  and mean per-class recall, as :func:`anyclip.eval.zero_shot_classification`.
* ``--val-data`` (image-caption pairs in the training formats): image->text and text->image R@1/5/10 and
  mean/median ranks, as :func:`anyclip.eval.metrics.retrieval_metrics` (open_clip's ``get_clip_metrics``).
* ``--zeroshot-shapes``: the synthetic shapes tasks (:func:`anyclip.eval.shapes.shapes_zero_shot`), drawn
  with the ShapesConfig stored in the training data's ``info.json`` when there is one.

Results come back as one flat dict, ``{"<set>/<metric>": value}``, ready for the run log.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("anyclip.train")


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    """Register the eval-during-training flags (open_clip_train's names where they exist).

    Example:
        >>> parser = argparse.ArgumentParser(); add_eval_arguments(parser)
    """
    p.add_argument("--val-data", default=None, help="image-caption pairs (CSV, shards) for retrieval metrics")
    p.add_argument("--val-frequency", type=int, default=1, help="evaluate --val-data every N epochs")
    p.add_argument("--zeroshot-data", default=None, help="labelled images (ImageFolder, CSV, shards)")
    p.add_argument("--zeroshot-classnames", default=None, help="class names file for --zeroshot-data")
    p.add_argument("--zeroshot-templates", default=None, help="templates: imagenet, simple, default or a file")
    p.add_argument("--imagenet-val", default=None, help="ImageNet val folder (ImageNet names and templates)")
    p.add_argument("--zeroshot-shapes", type=int, default=0, metavar="N",
                   help="score the shapes tasks on N rendered images each")
    p.add_argument("--zeroshot-frequency", type=int, default=1, help="run zero-shot evals every N epochs")


class TrainEvaluator:
    """The evaluations configured by ``anyclip train``'s flags; call it with the model after an epoch.

    Datasets are read (and their problems reported) when the evaluator is built, before training starts.

    Example:
        >>> evaluator = TrainEvaluator(args, tokenizer, preprocess_val)  # doctest: +SKIP
        >>> evaluator(model, epoch=2)  # doctest: +SKIP
        {'shapes/shape/acc1': 0.97, 'val/image_retrieval_recall@1': 0.41, ...}
    """

    def __init__(self, args, tokenizer, preprocess, data_config_from: str | None = None):
        for flag in ("val_frequency", "zeroshot_frequency"):
            if getattr(args, flag) < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
        if args.zeroshot_shapes < 0:
            raise ValueError(f"--zeroshot-shapes must be >= 0, got {args.zeroshot_shapes}")
        self.args, self.tokenizer, self.preprocess = args, tokenizer, preprocess
        self.zeroshot = []  # (prefix, LabelledImages, classnames, templates)
        if args.zeroshot_data:
            self.zeroshot.append(("zeroshot",) + _labelled(args.zeroshot_data, args.zeroshot_classnames,
                                                            args.zeroshot_templates))
        if args.imagenet_val:
            self.zeroshot.append(("imagenet-val",) + _labelled(args.imagenet_val, "imagenet", "imagenet"))
        self.val = None
        if args.val_data:
            from ..data.retrieval import RetrievalSet
            from .data import open_train_data
            pairs = open_train_data(args.val_data, args.dataset_type, img_key=args.csv_img_key,
                                    caption_key=args.csv_caption_key, separator=args.csv_separator)
            keep = [i for i, caption in enumerate(pairs.captions) if caption.strip()]  # as training skips them
            if not keep:
                raise ValueError(f"--val-data {args.val_data}: every caption is empty")
            self.val = RetrievalSet.from_pairs([pairs.images[i] for i in keep], [pairs.captions[i] for i in keep],
                                               name=f"--val-data {args.val_data}")
        self.shapes_config = _shapes_config_near(data_config_from) if args.zeroshot_shapes else None

    @property
    def active(self) -> bool:
        """Whether any evaluation is configured."""
        return bool(self.zeroshot or self.val is not None or self.shapes_config is not None)

    def due(self, epoch: int, last: bool) -> bool:
        """Whether an evaluation runs after ``epoch`` epochs (``last``: the final epoch, which always runs)."""
        return self.active and (last or epoch % self.args.zeroshot_frequency == 0 or epoch % self.args.val_frequency == 0)

    def __call__(self, model, epoch: int, last: bool = False) -> dict:
        """Run the evaluations due after ``epoch`` epochs; returns ``{"<set>/<metric>": value}``."""
        from ..eval.zero_shot import zero_shot_classification
        out = {}
        if last or epoch % self.args.zeroshot_frequency == 0:
            for prefix, data, classnames, templates in self.zeroshot:
                result = zero_shot_classification(model, self.tokenizer, data, classnames=classnames,
                                                  templates=templates, preprocess=self.preprocess,
                                                  workers=self.args.workers, progress=False)
                out.update({f"{prefix}/{k}": v for k, v in result.metrics.items()})
                if result.skipped:
                    log.warning("%s: %d unreadable images left out", prefix, len(result.skipped))
            if self.shapes_config is not None:
                from ..eval.shapes import shapes_zero_shot
                results = shapes_zero_shot(model, self.tokenizer, self.shapes_config,
                                           num_samples=self.args.zeroshot_shapes, preprocess=self.preprocess)
                out.update({f"shapes/{task}/{k}": v for task, m in results.items() for k, v in m.items()})
        if self.val is not None and (last or epoch % self.args.val_frequency == 0):
            out.update({f"val/{k}": v for k, v in self._retrieval(model).items()})
        return {k: float(v) for k, v in out.items()}

    def _retrieval(self, model) -> dict:
        from ..eval.retrieval import zero_shot_retrieval
        result = zero_shot_retrieval(model, self.tokenizer, self.val, preprocess=self.preprocess,
                                     workers=self.args.workers, progress=False)
        if result.skipped:
            log.warning("--val-data: %d unreadable images left out", len(result.skipped))
        return result.metrics


def _labelled(path, classnames, templates):
    from ..data.common import detect_dataset_type
    from ..data.labelled import read_classnames, read_image_folder, read_labelled_csv, read_webdataset
    from ..eval.zero_shot import read_templates
    from ..zero_shot import IMAGENET_CLASSNAMES
    if classnames == "imagenet":
        names = tuple(IMAGENET_CLASSNAMES)
    else:
        names = read_classnames(classnames) if classnames else None
    kind = detect_dataset_type(path, "classification")
    reader = {"imagefolder": read_image_folder, "csv": read_labelled_csv, "webdataset": read_webdataset}.get(kind)
    if reader is None:
        raise ValueError(f"--zeroshot-data {path}: a {kind} dataset has no class labels")
    data = reader(path, names)
    names = names or data.classnames
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    return data, names, read_templates(templates, names, folder)


def _shapes_config_near(train_data: str | None):
    """The ShapesConfig recorded beside the training data, else the default one."""
    from ..data.shapes import ShapesConfig
    return (ShapesConfig.near(train_data) if train_data else None) or ShapesConfig()


__all__ = ["TrainEvaluator", "add_eval_arguments"]
