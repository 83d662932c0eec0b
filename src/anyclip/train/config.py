"""``anyclip train``'s settings as one typed, validated value: :class:`TrainConfig`.

Every flag of ``anyclip train`` is a field named after it (open_clip_train's names: ``--batch-size`` is
``batch_size``), with the flag's default and help. The fields come in sections, and each part of training
gets only its own section (or plain values from it):

* ``data`` (:class:`DataConfig`): the training pairs, their format and augmentation -- read by
  :func:`~anyclip.train.data.open_run_data` and the batches;
* ``model``, ``pretrained``, ``precision``, ``seed`` (top level): the model to train;
* ``loss`` (:class:`LossConfig`): CLIP, SigLIP or CoCa -- :meth:`TrainConfig.loss_kind`;
* ``optim`` (:class:`OptimConfig`): batches, epochs, AdamW and its schedule;
* ``options`` (:class:`OptionsConfig`): locks, gradient checkpointing, distillation, EMA, WiSE-FT --
  :func:`~anyclip.train.options.prepare_model`;
* ``eval`` (:class:`EvalConfig`): evaluations during training -- ``open_run_data`` and ``TrainEvaluator``;
* ``run`` (:class:`RunConfig`): the run folder, its logs and checkpoints, ``--resume``;
* ``distributed`` (:class:`DistributedConfig`): :func:`~anyclip.train.distributed.setup_distributed`.

Every check that needs no data or model runs when a config is made, and each error names the flag; so a
config that exists is one a run can start from. The command line and Python meet here:
:meth:`TrainConfig.from_args` reads ``anyclip train``'s parsed flags, :meth:`TrainConfig.from_flags` takes
the same names as keywords, and :func:`add_train_arguments` registers one flag per field.

Example:
    >>> config = TrainConfig.from_flags(train_data="data/shapes/train/train.csv", model="anyclip-shapes",
    ...                                 batch_size=128, epochs=6, lr=1e-3, zeroshot_shapes=500)
    >>> config.optim.batch_size, config.data.workers, config.eval.zeroshot_shapes
    (128, 4, 500)
"""

# No ``from __future__ import annotations`` here: a field's type must stay a class, which is how a field
# holding a section is told from a flag.
import argparse
import ast
import dataclasses

from ..cli_args import (
    dir_or_keyword,
    existing_dir,
    file_or_keyword,
    non_negative_float,
    non_negative_int,
    open_fraction,
    positive_float,
    positive_int,
    separator,
)
from .config_fields import Section, flag, is_section
from .logs import parse_report_to
from .options import PRECISIONS, wise_ft_alphas


def parse_aug_cfg(items) -> dict:
    """``--aug-cfg`` ``KEY=VALUE`` items (values are Python literals, as open_clip reads them) to a dict.

    Example:
        >>> parse_aug_cfg(["scale=(0.5, 1.0)", "gray_scale_prob=0.2"])
        {'scale': (0.5, 1.0), 'gray_scale_prob': 0.2}
    """
    if not items:
        return {}
    from ..transforms import AugmentConfig
    known = [f.name for f in dataclasses.fields(AugmentConfig)]
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise ValueError(f"--aug-cfg {item!r}: expected KEY=VALUE with KEY one of {', '.join(known)}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise ValueError(f"--aug-cfg {item!r}: {value!r} is not a Python literal") from None
    AugmentConfig(**out)  # validates the values, naming the bad one
    return out


@dataclasses.dataclass(frozen=True)
class DataConfig(Section):
    """The training pairs: where they are, how they are read (the eval pairs of ``--val-data`` too), augmented.

    Example:
        >>> DataConfig("train.csv", aug_cfg=["scale=(0.5, 1.0)"]).augment
        {'scale': (0.5, 1.0)}
    """

    train_data: str = flag(help="CSV file, WebDataset shards (brace patterns, '::') or TFRecord files",
                           aliases=("--train-path",))
    dataset_type: str = flag("auto", "format of --train-data and --val-data (default: from the names)",
                             choices=("auto", "csv", "webdataset", "tfrecord"))
    csv_img_key: str | None = flag(
        None, "CSV column of image paths (default filepath); TFRecord feature of image bytes (default jpg)",
        aliases=("--image-key",))
    csv_caption_key: str | None = flag(
        None, "CSV column of captions (default title); TFRecord feature of captions (default caption)",
        aliases=("--text-key",))
    csv_separator: str = flag("auto", "CSV separator: one character, or auto (default): tab when the header line "
                                      "has one (open_clip's files), else comma (open_clip_jax's)",
                          arg_type=separator)
    workers: int = flag(4, "image decoding threads", arg_type=non_negative_int)
    aug_cfg: tuple = flag((), "train augmentation, open_clip's names: scale='(0.5,1.0)' ratio=... "
                              "color_jitter='(0.4,0.4,0.4,0.1)' color_jitter_prob=0.8 gray_scale_prob=0.2",
                          metavar="KEY=VALUE")

    def _check(self):
        parse_aug_cfg(self.aug_cfg)

    @property
    def augment(self) -> dict:
        """``--aug-cfg`` as :class:`~anyclip.transforms.AugmentConfig` keywords (empty: the default transform)."""
        return parse_aug_cfg(self.aug_cfg)


@dataclasses.dataclass(frozen=True)
class LossConfig(Section):
    """Which loss: CLIP's by default, SigLIP's, or CoCa's with its two weights.

    Example:
        >>> LossConfig(coca=True).coca_caption_loss_weight
        2.0
    """

    siglip: bool = flag(False, "sigmoid loss (needs a model with logit_bias)")
    coca: bool = flag(False, "CoCa loss: contrastive + captioning (needs a CoCa model; CoCa models always use it)")
    coca_caption_loss_weight: float = flag(2.0, "weight of CoCa's caption loss", arg_type=non_negative_float)
    coca_contrastive_loss_weight: float = flag(1.0, "weight of CoCa's contrastive loss (0 trains captioning only)",
                                               arg_type=non_negative_float)


@dataclasses.dataclass(frozen=True)
class OptimConfig(Section):
    """Batches, epochs, AdamW and the learning-rate schedule (open_clip_train's recipe).

    Example:
        >>> OptimConfig(batch_size=0)
        Traceback (most recent call last):
        ValueError: --batch-size must be >= 1, got 0
    """

    batch_size: int = flag(64, "samples per micro-batch and device", minimum=1, arg_type=positive_int)
    global_batch_size: int | None = flag(
        None, "open_clip_jax's flag: samples per micro-batch over all devices (replaces --batch-size; must divide "
              "by the device count)", kind=int, minimum=1, arg_type=positive_int)
    accum_freq: int = flag(1, "micro-batches per optimiser step", minimum=1, arg_type=positive_int)
    epochs: int = flag(1, "passes over the training data", minimum=1, aliases=("--n-epochs",), arg_type=positive_int)
    lr: float = flag(5e-4, "peak learning rate", aliases=("--learning-rate",), arg_type=positive_float)
    wd: float = flag(0.2, "AdamW weight decay", arg_type=non_negative_float)
    beta1: float = flag(0.9, "AdamW beta1, in [0, 1)", arg_type=open_fraction)
    beta2: float = flag(0.98, "AdamW beta2, in [0, 1)", arg_type=open_fraction)
    eps: float = flag(1e-6, "AdamW epsilon", arg_type=positive_float)
    warmup: int = flag(0, "warmup steps", aliases=("--n-warmup-steps",), arg_type=non_negative_int)
    lr_scheduler: str = flag("cosine", "learning-rate schedule after the warmup",
                             choices=("cosine", "const", "const-cooldown"))
    epochs_cooldown: int | None = flag(None, "const-cooldown: epochs of cooldown", kind=int, arg_type=non_negative_int)
    grad_clip_norm: float | None = flag(None, "clip gradients to this global norm", kind=float, arg_type=positive_float)

    def device_batch_size(self, devices: int) -> int:
        """Samples per micro-batch on each of ``devices``: ``--batch-size``, or ``--global-batch-size`` shared out.

        Example:
            >>> OptimConfig(global_batch_size=128).device_batch_size(2)
            64
        """
        if self.global_batch_size is None:
            return self.batch_size
        if self.global_batch_size % devices:
            raise ValueError(f"--global-batch-size {self.global_batch_size} must be divisible by the number of "
                             f"devices ({devices})")
        return self.global_batch_size // devices


@dataclasses.dataclass(frozen=True)
class OptionsConfig(Section):
    """Fine-tuning options: (partial) tower locks, gradient checkpointing, distillation, EMA, WiSE-FT.

    Example:
        >>> OptionsConfig(wise_ft="0,2")
        Traceback (most recent call last):
        ValueError: --wise-ft: '2' is not a number in [0, 1]
    """

    lock_image: bool = flag(False, "freeze the image tower")
    lock_image_unlocked_groups: int = flag(0, "with --lock-image: leave the last N image-tower layer groups trainable",
                                           minimum=0, arg_type=non_negative_int)
    lock_image_freeze_bn_stats: bool = flag(
        False, "accepted for open_clip compatibility; ViTs have no batch norm, so it changes nothing")
    lock_text: bool = flag(False, "freeze the text tower")
    lock_text_unlocked_layers: int = flag(0, "with --lock-text: leave the last N text-tower layer groups trainable",
                                          aliases=("--lock-text-unlocked-groups",), minimum=0, arg_type=non_negative_int)
    lock_text_freeze_layer_norm: bool = flag(
        False, "accepted for open_clip compatibility; locked LayerNorms are always frozen")
    grad_checkpointing: bool = flag(
        False, "recompute each transformer block in the backward pass (less memory, same result)")
    distill_model: str | None = flag(None, "teacher architecture (with --distill-pretrained)")
    distill_pretrained: str | None = flag(None, "teacher weights: tag or checkpoint")
    ema: bool = flag(False, "keep an EMA of the weights; exported as final_ema/")
    ema_decay: float = flag(0.9999, "EMA decay, in [0, 1) (timm's default 0.9999)", arg_type=open_fraction)
    ema_warmup: bool = flag(False, "timm's EMA decay warmup 1 - (1 + step) ** -2/3")
    wise_ft: str | None = flag(
        None, "with --pretrained: also export final_wise_ft_<alpha>/ = (1-alpha)*pretrained + alpha*final",
        metavar="ALPHA[,ALPHA...]")

    def _check(self):
        if (self.distill_model is None) != (self.distill_pretrained is None):
            raise ValueError("distillation needs both --distill-model and --distill-pretrained")
        if not 0.0 <= self.ema_decay <= 1.0:
            raise ValueError(f"--ema-decay must be in [0, 1], got {self.ema_decay}")
        wise_ft_alphas(self.wise_ft)
        partial = self.lock_image_unlocked_groups or self.lock_text_unlocked_layers
        if self.lock_image and self.lock_text and not partial:
            raise ValueError("--lock-image and --lock-text together leave nothing to train")


@dataclasses.dataclass(frozen=True)
class EvalConfig(Section):
    """Evaluations during training: zero-shot classification, retrieval on ``--val-data``, the shapes tasks.

    Example:
        >>> evals = EvalConfig(zeroshot_shapes=500, zeroshot_frequency=2)
        >>> evals.val_data is None, evals.val_frequency
        (True, 1)
    """

    val_data: str | None = flag(None, "image-caption pairs (CSV, shards) for retrieval metrics",
                                aliases=("--valid-path",))
    val_frequency: int = flag(1, "evaluate --val-data every N epochs", minimum=1, arg_type=positive_int)
    zeroshot_data: str | None = flag(None, "labelled images (ImageFolder, CSV, shards)")
    zeroshot_classnames: str | None = flag(None, "class names file for --zeroshot-data (or imagenet)",
                                           arg_type=file_or_keyword("imagenet"))
    zeroshot_templates: str | None = flag(None, "templates: imagenet, simple, default or a file",
                                          arg_type=file_or_keyword("imagenet", "simple", "default"))
    imagenet_val: str | None = flag(None, "ImageNet val folder (ImageNet names and templates)", arg_type=existing_dir)
    zeroshot_shapes: int = flag(0, "score the shapes tasks on N rendered images each", minimum=0, metavar="N",
                                arg_type=non_negative_int)
    zeroshot_frequency: int = flag(1, "run zero-shot evals every N epochs", minimum=1, arg_type=positive_int)


@dataclasses.dataclass(frozen=True)
class RunConfig(Section):
    """The run folder ``<logs>/<name>/``: what it logs, when it saves checkpoints, which one it resumes.

    Example:
        >>> RunConfig(name="shapes", save_every_n_steps=500).keep
        3
    """

    logs: str = flag("./logs", "where run folders go")
    name: str | None = flag(None, "run folder name (default: model and time)")
    save_frequency: int = flag(1, "save a checkpoint every N epochs", minimum=1, arg_type=positive_int)
    save_every_n_steps: int | None = flag(None, "also save every N optimiser steps", kind=int, arg_type=positive_int)
    keep: int = flag(3, "checkpoints kept (newest)", minimum=1, arg_type=positive_int)
    resume: str | None = flag(None, "'latest' or a checkpoint folder", arg_type=dir_or_keyword("latest"))
    log_every_n_steps: int = flag(10, "write a train.jsonl record every N steps", minimum=1, arg_type=positive_int)
    log_every_seconds: float = flag(30.0, "when stderr is not a terminal, a progress line every N seconds "
                                          "(0: none)", minimum=0, arg_type=non_negative_float)
    report_to: str = flag("jsonl", "jsonl, tensorboard or both, comma-separated (train.jsonl is always written)")

    def _check(self):
        parse_report_to(self.report_to)  # an unknown name or a missing tensorboardX fails fast


@dataclasses.dataclass(frozen=True)
class DistributedConfig(Section):
    """How to spread training: JAX devices and hosts, or the torch process group of ``torchrun``.

    Example:
        >>> DistributedConfig(dist_timeout=0)
        Traceback (most recent call last):
        ValueError: --dist-timeout must be > 0 seconds, got 0.0
    """

    dist_backend: str | None = flag(None, "torch: nccl or gloo (default nccl on GPU, gloo on CPU); jax: ignored")
    dist_url: str | None = flag(None, "jax: coordinator host:port of a multi-host job (default from the environment)")
    world_size: int | None = flag(None, "jax multi-host: number of processes", kind=int, arg_type=positive_int)
    rank: int | None = flag(None, "jax multi-host: this process's index", kind=int, arg_type=non_negative_int)
    devices: int | None = flag(None, "jax: train on the first N devices (default all; 1 turns data parallelism off)",
                               kind=int, arg_type=positive_int)
    local_loss: bool = flag(False, "torch: score this rank's rows against the gathered ones (open_clip's --local-loss)")
    gather_with_grad: bool = flag(False, "torch: all-gather features with gradient (open_clip's --gather-with-grad)")
    dist_timeout: float = flag(1800.0, "seconds a collective waits for the other workers before the job stops",
                               arg_type=positive_float)
    fsdp: bool = flag(False, "jax: also shard the weights over the devices (for towers too large for one device)")

    def _check(self):
        if self.dist_timeout <= 0:
            raise ValueError(f"--dist-timeout must be > 0 seconds, got {self.dist_timeout}")


@dataclasses.dataclass(frozen=True)
class TrainConfig(Section):
    """Everything one training run needs, checked: the flags of ``anyclip train`` as typed fields.

    Build it from Python with :meth:`from_flags` (the flags' names, sections found for you) or section by
    section; ``anyclip train`` builds it with :meth:`from_args`. :func:`anyclip.train.train` runs it.

    Example:
        >>> config = TrainConfig(DataConfig("train.csv"), model="ViT-B-32", optim=OptimConfig(epochs=2))
        >>> config == TrainConfig.from_flags(train_data="train.csv", epochs=2)
        True
        >>> TrainConfig.from_flags(train_data="train.csv", distill_model="ViT-B-32", distill_pretrained="openai",
        ...                        siglip=True)
        Traceback (most recent call last):
        ValueError: --distill-model works with the CLIP loss (open_clip's DistillClipLoss), not --siglip
    """

    data: DataConfig
    model: str = flag("ViT-B-32", "architecture name (open_clip_jax's names too), JSON config file, hf-hub: or "
                                  "local-dir:", aliases=("--model-name",))
    pretrained: str | None = flag(None, "tag or checkpoint to fine-tune from")
    resize_pos_embed: bool = flag(False, "let --pretrained weights with another image size or context length "
                                         "load, their positional embeddings resized (open_clip does it silently)")
    precision: str = flag("fp32", "amp/amp_fp16/fp16 add loss scaling", choices=PRECISIONS)
    seed: int = flag(0, "random seed", arg_type=non_negative_int)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    options: OptionsConfig = dataclasses.field(default_factory=OptionsConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    distributed: DistributedConfig = dataclasses.field(default_factory=DistributedConfig)

    def _check(self):
        from ..compat.open_clip_jax_names import list_models as open_clip_jax_models
        if self.model in open_clip_jax_models():  # open_clip_jax's main.py names, e.g. vit-base-patch32
            from ..compat.open_clip_jax_names import anyclip_name
            object.__setattr__(self, "model", anyclip_name(self.model, pretrained=False)[0])
        for field in dataclasses.fields(self):
            if is_section(field) and not isinstance(getattr(self, field.name), field.type):
                raise TypeError(f"TrainConfig.{field.name} takes a section of type {field.type.__name__}, "
                                f"got {type(getattr(self, field.name)).__name__}")
        if self.data.workers < 0 or self.optim.warmup < 0:
            raise ValueError("--workers and --warmup must be >= 0")
        if self.options.distill_model is not None and self.loss.siglip:
            raise ValueError("--distill-model works with the CLIP loss (open_clip's DistillClipLoss), not --siglip")
        if self.options.wise_ft and not self.pretrained:
            raise ValueError("--wise-ft interpolates from the --pretrained weights; give --pretrained")
        if self.loss.coca:  # --coca says the model is a CoCa model
            self._refuse_with_coca()

    def _refuse_with_coca(self) -> None:
        """CoCa's loss does not combine with the other loss options."""
        distill = self.options.distill_model is not None
        for option, used in (("--siglip", self.loss.siglip), ("--distill-model", distill)):
            if used:
                raise ValueError(f"{option} does not work with a CoCa model ({self.model}), which trains with "
                                 "CoCa's loss")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "TrainConfig":
        """The config of ``anyclip train``'s parsed flags (other attributes, such as the subcommand, are ignored).

        Example:
            >>> parser = argparse.ArgumentParser(); add_train_arguments(parser)
            >>> TrainConfig.from_args(parser.parse_args(["--train-data", "train.csv", "--lr", "1e-3"])).optim.lr
            0.001
        """
        names = {field.name for field in cls.flag_fields()}
        return cls.from_flags(**{key: value for key, value in vars(args).items() if key in names})

    def loss_kind(self, model) -> str:
        """The loss that trains ``model``: ``"clip"``, ``"siglip"``, ``"distill"`` or ``"coca"`` (a CoCa model
        always trains with CoCa's loss, as in open_clip_train); a ValueError naming the flag when they do not fit.

        Example:
            >>> TrainConfig.from_flags(train_data="train.csv", siglip=True).loss_kind(model)  # doctest: +SKIP
            'siglip'
        """
        coca = hasattr(model, "text_decoder")
        if self.loss.siglip and model.logit_bias is None:
            raise ValueError(f"--siglip needs a model with a logit_bias (init_logit_bias in its config); "
                             f"{self.model} has none")
        if self.loss.coca and not coca:
            raise ValueError(f"--coca needs a CoCa model (a config with multimodal_cfg, e.g. coca_ViT-B-32); "
                             f"{self.model} is not one")
        if coca:
            self._refuse_with_coca()
            return "coca"
        if self.options.distill_model is not None:
            return "distill"
        return "siglip" if self.loss.siglip else "clip"


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Register ``anyclip train``'s flags (open_clip_train's names where they overlap): one per
    :class:`TrainConfig` field, with its default and help.

    Example:
        >>> parser = argparse.ArgumentParser(); add_train_arguments(parser)
    """
    TrainConfig.add_arguments(p)


__all__ = ["DataConfig", "DistributedConfig", "EvalConfig", "LossConfig", "OptimConfig", "OptionsConfig",
           "RunConfig", "Section", "TrainConfig", "add_train_arguments", "flag", "parse_aug_cfg"]
