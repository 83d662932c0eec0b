"""``anyclip info``: the Keras backend and why it was chosen, its devices, versions and the weight cache."""

from __future__ import annotations

import importlib.metadata
import json

from .extras import install_command

# Distributions whose version `anyclip info` reports when installed (a backend may ship under several names).
_DISTRIBUTIONS = {"anyclip": ("anyclip",), "keras": ("keras",), "numpy": ("numpy",), "jax": ("jax",),
                  "torch": ("torch",), "tensorflow": ("tensorflow", "tensorflow-cpu", "tf-nightly"),
                  "open_clip": ("open_clip_torch",)}


def _version(name: str) -> str | None:
    for distribution in _DISTRIBUTIONS[name]:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def backend_devices(backend: str) -> list[str]:
    """The devices ``backend`` can run on, as short strings (imports the backend).

    Example:
        >>> backend_devices("jax")  # doctest: +SKIP
        ['cuda:0 (NVIDIA H100 80GB HBM3)']
    """
    if backend == "jax":
        import jax
        return [f"{d.platform}:{d.id}" + ("" if d.platform == "cpu" else f" ({d.device_kind})") for d in jax.devices()]
    if backend == "torch":
        import torch
        devices = ["cpu"]
        if torch.cuda.is_available():
            devices += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
        else:
            devices.append("cuda: not available")
        if torch.backends.mps.is_available():
            devices.append("mps")
        return devices
    if backend == "tensorflow":
        import tensorflow as tf
        return [d.name.removeprefix("/physical_device:") for d in tf.config.list_physical_devices()]
    return []


def collect_info() -> dict:
    """What ``anyclip info`` prints, as a dict: backend, reason, devices, versions, weights_cache, extras
    (each optional extra and its modules that are missing).

    Imports Keras (and so the backend) to read its devices.

    Example:
        >>> sorted(collect_info())  # doctest: +SKIP
        ['backend', 'devices', 'extras', 'reason', 'versions', 'weights_cache']
    """
    import keras  # noqa: F401  (the backend in effect is the one Keras loads)

    from . import __version__, backend_choice
    from .extras import missing_by_extra
    from .weights.hub import weights_cache_dir
    choice = backend_choice()
    versions = {name: _version(name) for name in ("anyclip", "keras", choice.name, "numpy", "open_clip")}
    versions["anyclip"] = versions["anyclip"] or __version__
    return {"backend": choice.name, "reason": choice.reason, "devices": backend_devices(choice.name),
            "versions": {name: v for name, v in versions.items() if v is not None},
            "weights_cache": weights_cache_dir(), "extras": missing_by_extra()}


def format_info(info: dict) -> str:
    """The human-readable form of :func:`collect_info`'s dict.

    Example:
        >>> print(format_info({"backend": "jax", "reason": "KERAS_BACKEND=jax", "devices": ["cpu:0"],
        ...                    "versions": {"keras": "3.15.1"}, "weights_cache": "/hf/hub",
        ...                    "extras": {"embed": [], "eval": ["sklearn"]}}))
        backend:        jax (KERAS_BACKEND=jax)
        devices:        cpu:0
        versions:       keras 3.15.1
        weights cache:  /hf/hub
        extras:         embed; eval needs sklearn: pip install 'anyclip[eval]'
    """
    rows = [("backend", f"{info['backend']} ({info['reason']})"),
            ("devices", ", ".join(info["devices"]) or "-"),
            ("versions", ", ".join(f"{name} {v}" for name, v in info["versions"].items())),
            ("weights cache", info["weights_cache"])]
    if "extras" in info:
        rows.append(("extras", "; ".join(name if not missing else f"{name} needs {', '.join(missing)}: "
                                         f"{install_command(name)}" for name, missing in info["extras"].items())))
    return "\n".join(f"{label + ':':<15} {value}" for label, value in rows)


def register(subparsers) -> None:
    """Add the ``info`` command to ``anyclip``'s sub-command parsers.

    Example:
        >>> import argparse
        >>> parser = argparse.ArgumentParser(prog="anyclip")
        >>> register(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["info", "--json"]).json
        True
    """
    p = subparsers.add_parser("info", help="show the Keras backend and why it was chosen, devices, versions, "
                                           "and the weight cache")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run_info)


def run_info(args) -> int:
    """Run ``anyclip info``: print :func:`collect_info` as text, or as JSON with ``--json``.

    Example:
        >>> from anyclip.cli import main
        >>> main(["info", "--json"])  # doctest: +SKIP
        0
    """
    info = collect_info()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


__all__ = ["backend_devices", "collect_info", "format_info", "register", "run_info"]
