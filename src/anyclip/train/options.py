"""``anyclip train``'s model options: partial locking, gradient checkpointing, distillation, EMA, WiSE-FT.

Flags keep open_clip_train's names (``--lock-image-unlocked-groups``, ``--lock-text-unlocked-layers``,
``--grad-checkpointing``, ``--distill-model``/``--distill-pretrained``) and add ``--ema`` (timm's
``ModelEmaV3`` semantics) and ``--wise-ft``. The loop calls :func:`prepare_model` once the model exists
and :func:`export_variants` after writing ``final/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
from pathlib import Path

#: ``--precision`` values that train in float16 and so get dynamic loss scaling.
LOSS_SCALED = ("amp", "amp_fp16", "fp16")
PRECISIONS = ("fp32", "amp_bf16", *LOSS_SCALED)


def add_option_arguments(p: argparse.ArgumentParser) -> None:
    """Register the locking, checkpointing, distillation, EMA and WiSE-FT flags.

    Example:
        >>> parser = argparse.ArgumentParser(); add_option_arguments(parser)
    """
    p.add_argument("--lock-image-unlocked-groups", type=int, default=0,
                   help="with --lock-image: leave the last N image-tower layer groups trainable")
    p.add_argument("--lock-image-freeze-bn-stats", action="store_true",
                   help="accepted for open_clip compatibility; ViTs have no batch norm, so it changes nothing")
    p.add_argument("--lock-text-unlocked-layers", "--lock-text-unlocked-groups", dest="lock_text_unlocked_layers",
                   type=int, default=0, help="with --lock-text: leave the last N text-tower layer groups trainable")
    p.add_argument("--lock-text-freeze-layer-norm", action="store_true",
                   help="accepted for open_clip compatibility; locked LayerNorms are always frozen")
    p.add_argument("--grad-checkpointing", action="store_true",
                   help="recompute each transformer block in the backward pass (less memory, same result)")
    p.add_argument("--distill-model", default=None, help="teacher architecture (with --distill-pretrained)")
    p.add_argument("--distill-pretrained", default=None, help="teacher weights: tag or checkpoint")
    p.add_argument("--ema", action="store_true", help="keep an EMA of the weights; exported as final_ema/")
    p.add_argument("--ema-decay", type=float, default=0.9999, help="EMA decay (timm's default 0.9999)")
    p.add_argument("--ema-warmup", action="store_true", help="timm's EMA decay warmup 1 - (1 + step) ** -2/3")
    p.add_argument("--wise-ft", default=None, metavar="ALPHA[,ALPHA...]",
                   help="with --pretrained: also export final_wise_ft_<alpha>/ = (1-alpha)*pretrained + alpha*final")


def wise_ft_alphas(text: str | None) -> list[float]:
    """``"0.5,1"`` -> ``[0.5, 1.0]``; each must be a number in [0, 1].

    Example:
        >>> wise_ft_alphas("0.25,0.5")
        [0.25, 0.5]
    """
    if not text:
        return []
    alphas = []
    for part in text.split(","):
        try:
            alpha = float(part)
        except ValueError:
            alpha = math.nan
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"--wise-ft: {part.strip()!r} is not a number in [0, 1]")
        alphas.append(alpha)
    return alphas


def check_option_arguments(args) -> None:
    """Refuse inconsistent option flags before anything is loaded (each error names the flag).

    Example:
        >>> check_option_arguments(parser.parse_args([...]))  # doctest: +SKIP
    """
    for flag in ("lock_image_unlocked_groups", "lock_text_unlocked_layers"):
        if getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    if (args.distill_model is None) != (args.distill_pretrained is None):
        raise ValueError("distillation needs both --distill-model and --distill-pretrained")
    if args.distill_model is not None and args.siglip:
        raise ValueError("--distill-model works with the CLIP loss (open_clip's DistillClipLoss), not --siglip")
    if not 0.0 <= args.ema_decay <= 1.0:
        raise ValueError(f"--ema-decay must be in [0, 1], got {args.ema_decay}")
    if wise_ft_alphas(args.wise_ft) and not args.pretrained:
        raise ValueError("--wise-ft interpolates from the --pretrained weights; give --pretrained")


@dataclasses.dataclass
class Extras:
    """What :func:`prepare_model` made: the teacher, the EMA and the zero-shot weights (each may be None).

    Example:
        >>> Extras().teacher is None
        True
    """

    teacher: object = None
    ema: object = None
    zero_shot: dict | None = None


def prepare_model(args, model) -> Extras:
    """Lock towers, turn on gradient checkpointing, load the teacher, start the EMA, keep the zero-shot weights.

    Call it right after the model is created (before a resume overwrites the pretrained weights).

    Example:
        >>> extras = prepare_model(args, model)  # doctest: +SKIP
    """
    import anyclip
    from ..weights.mapping import export_state_dict
    from .weights_avg import ModelEMA
    extras = Extras()
    if args.precision == "fp16":
        logging.getLogger("anyclip.train").warning(
            "--precision fp16 keeps the weights and Adam moments in float16; amp (float32 weights) is more robust")
    if args.wise_ft:
        extras.zero_shot = export_state_dict(model)
    if args.lock_image:
        model.lock_image_tower(args.lock_image_unlocked_groups, args.lock_image_freeze_bn_stats)
    if args.lock_text:
        model.lock_text_tower(args.lock_text_unlocked_layers)
    if args.grad_checkpointing:
        model.set_grad_checkpointing()
    if args.distill_model is not None:
        teacher = anyclip.create_model(args.distill_model, args.distill_pretrained, precision=args.precision,
                                       require_pretrained=True)
        if teacher.image_size != model.image_size or teacher.context_length < model.context_length:
            raise ValueError(f"the teacher {args.distill_model} takes {teacher.image_size} images and "
                             f"{teacher.context_length} tokens, the student {model.image_size} and "
                             f"{model.context_length}: they must share the image size and tokenizer")
        extras.teacher = teacher
    if args.ema:
        extras.ema = ModelEMA(model, decay=args.ema_decay, warmup=args.ema_warmup)
    return extras


def export_variants(args, run_dir: Path, model, extras: Extras) -> list[Path]:
    """Write ``final_ema/`` and ``final_wise_ft_<alpha>/`` beside ``final/``; returns the folders written.

    WiSE-FT interpolates the pretrained weights with the final (not the EMA) weights.

    Example:
        >>> export_variants(args, Path("logs/run"), model, extras)  # doctest: +SKIP
    """
    from ..weights.export import save_open_clip_checkpoint
    from ..weights.mapping import export_state_dict, load_state_dict
    from .weights_avg import wise_ft
    written = []
    if extras.ema is not None:
        with extras.ema.applied():
            save_open_clip_checkpoint(model, run_dir / "final_ema")
        written.append(run_dir / "final_ema")
    alphas = wise_ft_alphas(args.wise_ft)
    if alphas:
        finetuned = export_state_dict(model)
        for alpha in alphas:
            wise_ft(extras.zero_shot, finetuned, alpha, into=model)
            folder = run_dir / f"final_wise_ft_{alpha:g}"
            save_open_clip_checkpoint(model, folder)
            written.append(folder)
        load_state_dict(model, finetuned, source="the fine-tuned weights")
    return written


__all__ = ["Extras", "LOSS_SCALED", "PRECISIONS", "add_option_arguments", "check_option_arguments",
           "export_variants", "prepare_model", "wise_ft_alphas"]
