"""The tower contract (``towers.check_tower``) on a tiny CLIP of every family in the registry.

A family added to ``anyclip.towers.registry.FAMILIES`` fails here until ``towers.TINY`` has a config for it.
The slow tier also compares gradients with and without gradient checkpointing.
"""

import keras
import pytest
from towers import TINY, check_tower, tiny_config

from anyclip.towers.registry import FAMILIES

NAMES = [f.name for f in FAMILIES]


def test_every_registered_family_has_a_tiny_config():
    assert sorted(set(NAMES) - set(TINY)) == [], "add a tiny config for each new family to tests/towers.py TINY"
    assert sorted(set(TINY) - set(NAMES)) == [], "tests/towers.py TINY names families the registry does not have"


def _check(family, tmp_path, gradients):
    if family not in TINY:
        pytest.fail(f"no tiny config for family {family!r} in tests/towers.py TINY")
    try:
        check_tower(family, tiny_config(family, tmp_path), tmp_path, gradients=gradients)
    finally:
        keras.backend.clear_session()


@pytest.mark.parametrize("family", NAMES)
def test_tower_contract(family, tmp_path):
    _check(family, tmp_path, gradients=False)


@pytest.mark.slow
@pytest.mark.parametrize("family", NAMES)
def test_tower_contract_with_gradients(family, tmp_path):
    _check(family, tmp_path, gradients=True)
