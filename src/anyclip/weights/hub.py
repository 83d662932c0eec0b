"""Finding checkpoint files: the Hugging Face hub (through its normal cache) and local folders.

Downloads go through ``huggingface_hub.hf_hub_download`` so they land in (and are served from) the
standard cache and honour ``HF_HUB_OFFLINE``, ``HF_HUB_CACHE``, ``HF_ENDPOINT`` and ``HF_TOKEN``. Before that,
one quick request (:data:`PROBE_TIMEOUT_S` seconds at most) checks that the hub answers; when it does not, only the
local cache is read, so an offline machine fails at once instead of after a minute of retries. When a file is
neither cached nor reachable the error says what to download and where to put it.
"""

from __future__ import annotations

import json
from pathlib import Path

CONFIG_NAME = "open_clip_config.json"
SAFE_WEIGHTS_NAME = "open_clip_model.safetensors"
WEIGHTS_NAME = "open_clip_pytorch_model.bin"
# open_clip's preference when a folder holds several checkpoints.
PROBE_TIMEOUT_S = 3.0  # seconds the reachability check waits for the hub's first answer
_PREFERRED = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
              "open_clip_pytorch_model.pth", "model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")


class WeightsUnavailableError(FileNotFoundError):
    """Weights could not be found locally or downloaded; the message lists what was tried.

    Example:
        >>> find_checkpoint_in_dir("/empty/folder")  # doctest: +SKIP
        WeightsUnavailableError: no checkpoint (*.safetensors, *.bin, *.pth, *.pt) in folder /empty/folder
    """


def _safe_alternatives(filename: str) -> list[str]:
    if filename == WEIGHTS_NAME:
        return [SAFE_WEIGHTS_NAME, filename]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors", filename]
    return [filename]


_REACHABLE: dict = {}  # endpoint -> whether it answered: one probe per process and endpoint


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the Hugging Face hub (``HF_ENDPOINT``) answers one HEAD request within ``timeout`` seconds.

    ``False`` at once under ``HF_HUB_OFFLINE=1``. Any HTTP answer counts as reachable (errors such as a missing
    repo or a token problem are then reported by the download itself); proxies are honoured. The answer is
    remembered for the process, so an unreachable hub costs one attempt however many files are asked for.

    Example:
        >>> hub_reachable()  # doctest: +SKIP
        True
    """
    from huggingface_hub import constants, get_session
    if constants.HF_HUB_OFFLINE:
        return False
    if constants.ENDPOINT not in _REACHABLE:
        try:
            get_session().head(constants.ENDPOINT, timeout=timeout)
            _REACHABLE[constants.ENDPOINT] = True
        except Exception:  # connection refused, DNS failure, timeout, proxy error: all mean "cannot reach it now"
            _REACHABLE[constants.ENDPOINT] = False
    return _REACHABLE[constants.ENDPOINT]


def hf_download(repo_id: str, filename: str | None = None, revision: str | None = None,
                cache_dir: str | None = None) -> str:
    """Path of ``filename`` from hub repo ``repo_id`` (cached copy first), preferring safetensors.

    Example:
        >>> hf_download("laion/CLIP-ViT-B-32-laion2B-s34B-b79K")  # doctest: +SKIP
        '.../snapshots/<rev>/open_clip_model.safetensors'
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    candidates = _safe_alternatives(filename or WEIGHTS_NAME)
    online = hub_reachable()
    errors = []
    for name in candidates:
        try:
            return hf_hub_download(repo_id, name, revision=revision, cache_dir=cache_dir,
                                   library_name="anyclip", local_files_only=not online)
        except LocalEntryNotFoundError:  # (a subclass of EntryNotFoundError) offline, or the hub unreachable
            errors.append(f"{name}: not in the local cache and the hub cannot be reached")
        except EntryNotFoundError as e:
            errors.append(f"{name}: not in the repo ({type(e).__name__})")
        except Exception as e:  # offline, not cached, repo missing, auth...
            errors.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    raise WeightsUnavailableError(_unavailable_message(repo_id, candidates, errors, cache_dir, online))


def _unavailable_message(repo_id, candidates, errors, cache_dir, online: bool = True) -> str:
    """One line: why the weights of ``repo_id`` are not here, and the fix (offline cache, ``--checkpoint``)."""
    from huggingface_hub import constants
    cache = cache_dir or constants.HF_HUB_CACHE
    download = f"hf download {repo_id} {' '.join(dict.fromkeys((candidates[0], CONFIG_NAME)))}"
    elsewhere = (f"on a machine with network access run '{download}' and copy its cache into {cache} "
                 f"(or set HF_HUB_CACHE)")
    checkpoint = "or pass --checkpoint FILE (pretrained=FILE in Python)"
    if constants.HF_HUB_OFFLINE:
        return (f"{repo_id}: {candidates[0]} is not in the local cache {cache} and HF_HUB_OFFLINE is set; "
                f"{elsewhere}, {checkpoint}")
    if not online:
        return (f"cannot reach the Hugging Face Hub at {constants.ENDPOINT} (no answer within {PROBE_TIMEOUT_S:g} s) "
                f"and {repo_id} is not in the local cache {cache}; set HF_HUB_OFFLINE=1 to use the local cache "
                f"only, {checkpoint} ({elsewhere})")
    return (f"could not get weights from the Hugging Face Hub repo {repo_id!r} (tried: {'; '.join(errors)}); "
            f"{elsewhere}, {checkpoint}")


def weights_cache_dir() -> str:
    """The Hugging Face hub cache that pretrained weights are read from and downloaded to (``HF_HUB_CACHE``).

    Example:
        >>> weights_cache_dir()  # doctest: +SKIP
        '/home/me/.cache/huggingface/hub'
    """
    from huggingface_hub import constants
    return str(constants.HF_HUB_CACHE)


def hf_config(repo_id: str, revision: str | None = None, cache_dir: str | None = None) -> dict:
    """The ``open_clip_config.json`` of a hub repo as a dict (``model_cfg`` + ``preprocess_cfg``).

    Example:
        >>> hf_config("laion/CLIP-ViT-B-32-laion2B-s34B-b79K")["model_cfg"]["embed_dim"]  # doctest: +SKIP
        512
    """
    from huggingface_hub import hf_hub_download
    online = hub_reachable()
    try:
        path = hf_hub_download(repo_id, CONFIG_NAME, revision=revision, cache_dir=cache_dir, library_name="anyclip",
                               local_files_only=not online)
    except Exception as e:
        raise WeightsUnavailableError(_unavailable_message(
            repo_id, [CONFIG_NAME], [f"{CONFIG_NAME}: {type(e).__name__}"], cache_dir, online)) from None
    return read_config_json(path)


def read_config_json(path: str | Path) -> dict:
    """Read an ``open_clip_config.json``; it must hold a ``model_cfg`` object.

    Example:
        >>> read_config_json("my-model/open_clip_config.json")["model_cfg"]  # doctest: +SKIP
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read open_clip config ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_cfg"), dict):
        raise ValueError(f"{path}: an open_clip config needs a 'model_cfg' object")
    return data


def find_checkpoint_in_dir(folder: str | Path) -> Path:
    """The checkpoint open_clip would pick in a folder (safetensors first, then known names).

    Example:
        >>> find_checkpoint_in_dir("my-model")  # doctest: +SKIP
        PosixPath('my-model/open_clip_model.safetensors')
    """
    folder = Path(folder)
    found = [p for pattern in ("*.safetensors", "*.bin", "*.pth", "*.pt") for p in folder.glob(pattern)]
    if not found:
        raise WeightsUnavailableError(f"no checkpoint (*.safetensors, *.bin, *.pth, *.pt) in folder {folder}")
    preferred = [p for p in found if p.name in _PREFERRED]
    if preferred:
        return min(preferred, key=lambda p: _PREFERRED.index(p.name))
    return sorted(found, key=lambda p: (p.suffix != ".safetensors", p.name))[0]
