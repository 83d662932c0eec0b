"""``anyclip train``'s model options: partial locking, gradient checkpointing, distillation, EMA, WiSE-FT.

Flags keep open_clip_train's names (``--lock-image-unlocked-groups``, ``--lock-text-unlocked-layers``,
``--grad-checkpointing``, ``--distill-model``/``--distill-pretrained``) and add ``--ema`` (timm's
``ModelEmaV3`` semantics) and ``--wise-ft``; they are the fields of
:class:`~anyclip.train.config.OptionsConfig`. The loop calls :func:`prepare_model` with that section once
the model exists and :func:`export_variants` after writing ``final/``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

#: ``--precision`` values that train in float16 and so get dynamic loss scaling.
LOSS_SCALED = ("amp", "amp_fp16", "fp16")
PRECISIONS = ("fp32", "amp_bf16", *LOSS_SCALED)


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


@dataclasses.dataclass
class Extras:
    """What :func:`prepare_model` made: the teacher, the EMA and the zero-shot weights (each may be None), and
    the ``--wise-ft`` alphas that :func:`export_variants` exports.

    Example:
        >>> Extras().teacher is None
        True
    """

    teacher: object = None
    ema: object = None
    zero_shot: dict | None = None
    wise_ft_alphas: tuple = ()


def prepare_model(options, model, precision: str = "fp32") -> Extras:
    """Lock towers, turn on gradient checkpointing, load the teacher, start the EMA, keep the zero-shot weights.

    ``options``: an :class:`~anyclip.train.config.OptionsConfig`; ``precision``: the run's (the teacher's too).
    Call it right after the model is created (before a resume overwrites the pretrained weights).

    Example:
        >>> extras = prepare_model(OptionsConfig(ema=True), model)  # doctest: +SKIP
    """
    import anyclip

    from ..weights.mapping import export_state_dict
    from .weights_avg import ModelEMA
    extras = Extras()
    if precision == "fp16":
        logging.getLogger("anyclip.train").warning(
            "--precision fp16 keeps the weights and Adam moments in float16; amp (float32 weights) is more robust")
    extras.wise_ft_alphas = tuple(wise_ft_alphas(options.wise_ft))
    if extras.wise_ft_alphas:
        extras.zero_shot = export_state_dict(model)
    if options.lock_image:
        model.lock_image_tower(options.lock_image_unlocked_groups, options.lock_image_freeze_bn_stats)
    if options.lock_text:
        model.lock_text_tower(options.lock_text_unlocked_layers)
    if options.grad_checkpointing:
        model.set_grad_checkpointing()
    if options.distill_model is not None:
        teacher = anyclip.create_model(options.distill_model, options.distill_pretrained, precision=precision,
                                       require_pretrained=True)
        if teacher.image_size != model.image_size or teacher.context_length < model.context_length:
            raise ValueError(f"the teacher {options.distill_model} takes {teacher.image_size} images and "
                             f"{teacher.context_length} tokens, the student {model.image_size} and "
                             f"{model.context_length}: they must share the image size and tokenizer")
        extras.teacher = teacher
    if options.ema:
        extras.ema = ModelEMA(model, decay=options.ema_decay, warmup=options.ema_warmup)
    return extras


def export_variants(run_dir: Path, model, extras: Extras) -> list[Path]:
    """Write ``final_ema/`` and ``final_wise_ft_<alpha>/`` beside ``final/``; returns the folders written.

    WiSE-FT interpolates the pretrained weights (``extras.zero_shot``) with the final (not the EMA) weights,
    for each of ``extras.wise_ft_alphas``.

    Example:
        >>> export_variants(Path("logs/run"), model, extras)  # doctest: +SKIP
    """
    from ..weights.export import save_open_clip_checkpoint
    from ..weights.mapping import export_state_dict, load_state_dict
    from .weights_avg import wise_ft
    written = []
    if extras.ema is not None:
        with extras.ema.applied():
            save_open_clip_checkpoint(model, run_dir / "final_ema")
        written.append(run_dir / "final_ema")
    if extras.wise_ft_alphas:
        finetuned = export_state_dict(model)
        for alpha in extras.wise_ft_alphas:
            wise_ft(extras.zero_shot, finetuned, alpha, into=model)
            folder = run_dir / f"final_wise_ft_{alpha:g}"
            save_open_clip_checkpoint(model, folder)
            written.append(folder)
        load_state_dict(model, finetuned, source="the fine-tuned weights")
    return written


__all__ = ["Extras", "LOSS_SCALED", "PRECISIONS", "export_variants", "prepare_model", "wise_ft_alphas"]
