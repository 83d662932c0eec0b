"""The package layering holds (import-linter's contract in pyproject.toml) and every family has one registry row."""

import shutil
import subprocess
import sys
from pathlib import Path

import anyclip.towers.registry as registry

ROOT = Path(__file__).resolve().parents[1]


def test_packages_import_only_from_the_layers_below():
    """``lint-imports`` checks ``[tool.importlinter]``: cli > train > eval/embed/compat/export > ... > layers."""
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    proc = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "1 kept, 0 broken" in proc.stdout


def test_every_tower_module_is_reachable_from_the_registry():
    """No tower class outside the registry: each Tower subclass in anyclip.towers belongs to a registered family."""
    import importlib
    import pkgutil

    import anyclip.towers as towers
    from anyclip.towers.base import Tower
    for info in pkgutil.walk_packages(towers.__path__, "anyclip.towers."):
        importlib.import_module(info.name)
    registered = {f.tower_class() for f in registry.FAMILIES}

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)
    unregistered = [c.__qualname__ for c in subclasses(Tower) if c.__module__.startswith("anyclip.towers")
                    and c not in registered]
    assert not unregistered, f"tower classes with no registry row: {unregistered}"


def test_registry_rows_are_complete():
    names = [f.name for f in registry.FAMILIES]
    assert len(names) == len(set(names))
    timm = [n for f in registry.FAMILIES for n in f.timm_names]
    assert len(timm) == len(set(timm)), "a timm name belongs to two families"
    for family in registry.FAMILIES:
        assert family.modality in ("image", "text")
        assert family.tower_class().MODALITY == family.modality, family.name
        assert family.weight_table, family.name
