"""Evaluation during training: zero-shot accuracy, image-text retrieval and the shapes tasks, every N epochs.

* ``--zeroshot-data`` (an ImageFolder tree, a labelled CSV or WebDataset shards, as ``anyclip eval``
  reads them; ``--imagenet-val`` is the same with ImageNet's class names and 80 templates): top-1, top-5
  and mean per-class recall, as :func:`anyclip.eval.zero_shot_classification`.
* ``--val-data`` (image-caption pairs in the training formats): image->text and text->image R@1/5/10 and
  mean/median ranks, as :func:`anyclip.eval.metrics.retrieval_metrics` (open_clip's ``get_clip_metrics``).
* ``--zeroshot-shapes``: the synthetic shapes tasks (:func:`anyclip.eval.shapes.shapes_zero_shot`), drawn
  with the ShapesConfig stored in the training data's ``info.json`` when there is one.

Results come back as one flat dict, ``{"<set>/<metric>": value}``, ready for the run log. The sets are read
by :func:`anyclip.train.data.open_run_data` before training starts; the flags are the fields of
:class:`~anyclip.train.config.EvalConfig`.
"""

from __future__ import annotations

import logging

log = logging.getLogger("anyclip.train")


class TrainEvaluator:
    """The evaluations of a run's ``eval`` section on the sets :func:`~anyclip.train.data.open_run_data` read;
    call it with the model after an epoch.

    ``config``: an :class:`~anyclip.train.config.EvalConfig` (how often each set runs, the shapes sample
    count); ``sets``: :class:`~anyclip.train.data.EvalSets`; ``workers``: image decoding threads.

    Example:
        >>> evaluator = TrainEvaluator(config.eval, data.evals, tokenizer, preprocess_val)  # doctest: +SKIP
        >>> evaluator(model, epoch=2)  # doctest: +SKIP
        {'shapes/shape/acc1': 0.97, 'val/image_retrieval_recall@1': 0.41, ...}
    """

    def __init__(self, config, sets, tokenizer, preprocess, workers: int = 4):
        self.config, self.sets, self.tokenizer, self.preprocess = config, sets, tokenizer, preprocess
        self.workers = workers
        self.zeroshot = sets.zeroshot  # (prefix, LabelledImages, classnames, templates)
        self.val = sets.val
        self.shapes_config = sets.shapes

    @property
    def active(self) -> bool:
        """Whether any evaluation is configured."""
        return self.sets.active

    def due(self, epoch: int, last: bool) -> bool:
        """Whether an evaluation runs after ``epoch`` epochs (``last``: the final epoch, which always runs)."""
        cfg = self.config
        return self.active and (last or epoch % cfg.zeroshot_frequency == 0 or epoch % cfg.val_frequency == 0)

    def __call__(self, model, epoch: int, last: bool = False) -> dict:
        """Run the evaluations due after ``epoch`` epochs; returns ``{"<set>/<metric>": value}``."""
        from ..eval.zero_shot import zero_shot_classification
        out = {}
        if last or epoch % self.config.zeroshot_frequency == 0:
            for prefix, data, classnames, templates in self.zeroshot:
                result = zero_shot_classification(model, self.tokenizer, data, classnames=classnames,
                                                  templates=templates, preprocess=self.preprocess,
                                                  workers=self.workers, progress=False)
                out.update({f"{prefix}/{k}": v for k, v in result.metrics.items()})
                if result.skipped:
                    log.warning("%s: %d unreadable images left out", prefix, len(result.skipped))
            if self.shapes_config is not None:
                from ..eval.shapes import shapes_zero_shot
                results = shapes_zero_shot(model, self.tokenizer, self.shapes_config,
                                           num_samples=self.config.zeroshot_shapes, preprocess=self.preprocess)
                out.update({f"shapes/{task}/{k}": v for task, m in results.items() for k, v in m.items()})
        if self.val is not None and (last or epoch % self.config.val_frequency == 0):
            out.update({f"val/{k}": v for k, v in self._retrieval(model).items()})
        return {k: float(v) for k, v in out.items()}

    def _retrieval(self, model) -> dict:
        from ..eval.retrieval import zero_shot_retrieval
        result = zero_shot_retrieval(model, self.tokenizer, self.val, preprocess=self.preprocess,
                                     workers=self.workers, progress=False)
        if result.skipped:
            log.warning("--val-data: %d unreadable images left out", len(result.skipped))
        return result.metrics


__all__ = ["TrainEvaluator"]
