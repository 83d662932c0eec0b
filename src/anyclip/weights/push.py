"""Upload a model to the Hugging Face hub in open_clip's repository layout (``hf-hub:`` loads it back).

The repository gets ``open_clip_config.json`` (``model_cfg`` + ``preprocess_cfg``), ``open_clip_model.safetensors``
and, when it has none yet, a ``README.md`` model card. Tokenizer files are not written: open_clip and anyclip
take the tokenizer from ``text_cfg.hf_tokenizer_name`` (or CLIP's BPE when it is unset).

Example:
    >>> from anyclip.weights.push import push_to_hf_hub
    >>> push_to_hf_hub(model, None, None, repo_id="me/my-clip")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .export import save_open_clip_checkpoint
from .hub import CONFIG_NAME


def model_card_text(model_card: dict | None, model_name: str) -> str:
    """A README with the hub metadata open_clip writes (``library_name: open_clip``) and the card's sections.

    ``model_card`` keys: ``tags``, ``pipeline_tag``, ``license``, ``description``, ``details`` (a dict), ``usage``.

    Example:
        >>> model_card_text({"description": "A test."}, "my-clip").splitlines()[:3]
        ['---', 'tags:', '- clip']
    """
    card = dict(model_card or {})
    lines = ["---", "tags:", *[f"- {t}" for t in card.get("tags", ("clip",))], "library_name: open_clip",
             f"pipeline_tag: {card.get('pipeline_tag', 'zero-shot-image-classification')}",
             f"license: {card.get('license', 'mit')}", "---", f"# Model card for {model_name}"]
    if card.get("description"):
        lines += ["", card["description"]]
    if card.get("details"):
        lines += ["", "## Model Details", *[f"- **{k}:** {v}" for k, v in card["details"].items()]]
    if card.get("usage"):
        lines += ["", "## Model Usage", card["usage"]]
    return "\n".join(lines) + "\n"


def push_to_hf_hub(model, tokenizer, model_config: dict | None, repo_id: str,
                   commit_message: str = "Add model", token: str | None = None, revision: str | None = None,
                   private: bool = False, create_pr: bool = False, model_card: dict | None = None,
                   safe_serialization: bool | str = "both"):
    """Create (or reuse) the hub repository ``repo_id`` and upload ``model`` to it; returns the commit info.

    Arguments follow open_clip's ``push_to_hf_hub``; ``tokenizer`` is accepted for that signature and not
    uploaded (see the module notes); ``model_config`` replaces ``model.config`` in ``open_clip_config.json``.
    Weights are always safetensors: ``"both"`` (the default, open_clip's safetensors plus a pickled
    ``open_clip_pytorch_model.bin``) uploads the safetensors file only; ``safe_serialization=False`` (pickle only)
    is refused rather than silently ignored.

    Example:
        >>> push_to_hf_hub(model, None, None, repo_id="me/my-clip", private=True)  # doctest: +SKIP
    """
    from huggingface_hub import HfApi
    if not repo_id:
        raise ValueError("push_to_hf_hub needs a repo_id ('user/name')")
    if safe_serialization not in (True, "both"):
        raise ValueError(f"safe_serialization={safe_serialization!r}: anyclip uploads safetensors only "
                         "(open_clip 2.x and later read them); use safe_serialization=True or 'both'")
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    has_readme = api.file_exists(repo_id, "README.md", revision=revision)
    with tempfile.TemporaryDirectory(prefix="anyclip-push-") as folder:
        save_open_clip_checkpoint(model, folder)
        if model_config is not None:
            config_path = Path(folder) / CONFIG_NAME
            config = json.loads(config_path.read_text(encoding="utf-8"))
            config_path.write_text(json.dumps({**config, "model_cfg": model_config}, indent=2) + "\n")
        if not has_readme:
            (Path(folder) / "README.md").write_text(model_card_text(model_card, repo_id.split("/")[-1]))
        return api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision, create_pr=create_pr,
                                 commit_message=commit_message)
