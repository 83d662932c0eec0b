"""Which shipped configs the default test run checks against open_clip; the full sweep runs with ``-m slow``.

Every shipped config (``anyclip.list_models()``) is mapped to the kinds it exercises: the registry families of
its image and text towers (``anyclip.towers.registry.tower_family``) and ``coca`` for CoCa configs. The default
tier is a cheapest set of configs that covers every registered family and CoCa (greedy weighted set cover);
a config's cost is its measured parity time in ``parity_costs.json`` (``seconds``, JAX + torch, on 2 CPU cores).
A config without a measurement, or whose case took more than ``MAX_CASE_GIB`` (``peak_gib``: the test process
and its backend workers together) counts as dearer than any measured one: it is picked only for a kind no
other config covers (so a new family's first config is picked until it is measured). Refresh the costs from
the JUnit report of a full sweep::

    python -m pytest -m slow tests/test_parity.py --junitxml=parity.xml
    python tests/parity_tiers.py parity.xml        # rewrites tests/parity_costs.json, prints the default tier
"""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path

COSTS_FILE = Path(__file__).with_name("parity_costs.json")
COCA = "coca"  # CoCa configs count as their own kind (the caption decoder and its embedding path)
MAX_CASE_GIB = 7.5  # a case whose process tree peaks above this would take the default run past 8 GiB


def required_kinds() -> list[str]:
    """Every registered tower family, and CoCa: what the default tier must cover."""
    from anyclip.towers.registry import FAMILIES
    return [f.name for f in FAMILIES] + [COCA]


@functools.lru_cache(maxsize=None)
def config_kinds(name: str) -> frozenset[str]:
    """The kinds shipped config ``name`` exercises: its towers' families, and ``coca`` for CoCa configs."""
    from anyclip.models import get_model_config
    from anyclip.models.config import CoCaConfig
    from anyclip.towers.registry import tower_family
    cfg = get_model_config(name)
    kinds = {tower_family(cfg.vision_cfg).name, tower_family(cfg.text_cfg).name}
    return frozenset(kinds | ({COCA} if isinstance(cfg, CoCaConfig) else set()))


def load_costs() -> dict[str, dict]:
    """``{config: {"seconds": ..., "peak_gib": ...}}`` as measured (``parity_costs.json``)."""
    return json.loads(COSTS_FILE.read_text()) if COSTS_FILE.exists() else {}


def _seconds(costs: dict[str, dict]) -> dict[str, float]:
    """The costs the selection weighs: measured seconds of the configs within ``MAX_CASE_GIB``."""
    return {n: c["seconds"] for n, c in costs.items() if c.get("peak_gib", 0.0) <= MAX_CASE_GIB}


def default_configs(names, costs: dict[str, dict] | None = None) -> list[str]:
    """A cheap subset of ``names`` covering every kind that ``names`` cover, in the order of ``names``: greedy
    (lowest cost per newly covered kind first, ties by name), then the dearest configs whose kinds the others
    cover are dropped."""
    costs = _seconds(load_costs() if costs is None else costs)
    unknown = 10 * max(costs.values(), default=1.0)  # unmeasured or too big: dearer than any measured config
    names = list(names)
    uncovered = set().union(*(config_kinds(n) for n in names)) if names else set()
    chosen = set()
    while uncovered:
        best = min((n for n in names if config_kinds(n) & uncovered),
                   key=lambda n: (costs.get(n, unknown) / len(config_kinds(n) & uncovered), n))
        chosen.add(best)
        uncovered -= config_kinds(best)
    for name in sorted(chosen, key=lambda n: (-costs.get(n, unknown), n)):  # drop what the others cover
        if config_kinds(name) <= set().union(*(config_kinds(n) for n in chosen - {name})):
            chosen.discard(name)
    return [n for n in names if n in chosen]


def costs_from_junit(path) -> dict[str, dict]:
    """Per config in a JUnit report: ``seconds`` (its ``test_parity_jax`` plus ``test_parity_torch`` times) and
    ``peak_gib`` (the ``peak_rss_gib`` property ``test_parity_jax`` records)."""
    import xml.etree.ElementTree as ET
    costs: dict[str, dict] = {}
    for case in ET.parse(path).iter("testcase"):
        match = re.fullmatch(r"test_parity_(jax|torch)\[(.+)\]", case.get("name", ""))
        if not (match and case.get("classname", "").endswith("test_parity")):
            continue
        entry = costs.setdefault(match.group(2), {"seconds": 0.0})
        entry["seconds"] = round(entry["seconds"] + float(case.get("time", 0)), 1)
        for prop in case.iter("property"):
            if prop.get("name") == "peak_rss_gib":
                entry["peak_gib"] = float(prop.get("value"))
    return costs


def main(junit: str) -> None:
    import anyclip
    costs = {**load_costs(), **costs_from_junit(junit)}
    COSTS_FILE.write_text(json.dumps(dict(sorted(costs.items())), indent=1) + "\n")
    for name in default_configs(anyclip.list_models(), costs):
        print(f"{name}: {costs[name]['seconds']:.0f} s, {costs[name].get('peak_gib', float('nan')):.1f} GiB, "
              f"covers {', '.join(sorted(config_kinds(name)))}")


if __name__ == "__main__":
    main(*sys.argv[1:])
