"""Every docstring example that can run offline does, and shows what the docs say it shows.

Examples that need weights, files or a model from context carry ``# doctest: +SKIP``; the rest (config
parsing, registries, tokenizers, schedules, small helpers) are run here, module by module.
"""

import doctest
import importlib
import pkgutil

import pytest

import anyclip

MODULES = sorted(m.name for m in pkgutil.walk_packages(anyclip.__path__, "anyclip."))


def test_the_package_has_modules():
    assert len(MODULES) > 40 and "anyclip.weights.pretrained" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False,
                             report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed (above)"
