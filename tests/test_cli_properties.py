"""Property: every typed option of every ``anyclip`` command refuses bad values at parse time, in one line.

For each option with an :mod:`anyclip.cli_args` type or choices, hypothesis draws values the type must refuse
(negative, zero, huge, NaN, inf, non-numbers, empty, unicode junk, missing paths, folders for files, files for
folders, wrong suffixes); ``anyclip.cli.main`` must return 2 with one stderr line naming the option and no
traceback. Only the parser runs: no model is ever loaded.
"""

import argparse
import math
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyclip import cli, cli_args
from anyclip.cli import main

NUMBER_TYPES = {cli_args.positive_int, cli_args.non_negative_int, cli_args.positive_float,
                cli_args.non_negative_float, cli_args.fraction, cli_args.open_fraction}
PATH_TYPES = {cli_args.existing_file, cli_args.existing_dir, cli_args.existing_path}


def _kind(type_) -> str | None:
    name = getattr(type_, "__name__", "")
    if type_ in NUMBER_TYPES or name.startswith(("int_range(", "float_range(")):
        return "number"
    if type_ in PATH_TYPES or name.startswith(("file_or_keyword(", "dir_or_keyword(")):
        return "path"
    if type_ is cli_args.separator:
        return "separator"
    if name.startswith(("output_file(", "output_target(")):
        return "output"
    return None


def _typed_options():
    """(command words, option or positional, action) for every checked argument of every command."""
    parser = cli.build_parser()
    out = []
    for leaf in cli._leaf_parsers(parser):
        words = leaf.prog.split()[1:]
        for action in leaf._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.nargs == 0:
                continue
            if _kind(action.type) or action.choices:
                out.append((words, action))
            if not action.option_strings and action.nargs not in ("?", "*"):
                REQUIRED_BEFORE.setdefault(" ".join(words), []).append(action)
    return out


REQUIRED_BEFORE: dict[str, list] = {}  # command -> its required positionals, in order


OPTIONS = _typed_options()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _bounds(type_):
    """(low, high) of a number type: the values just outside are bad."""
    name = getattr(type_, "__name__", "")
    if name.startswith(("int_range(", "float_range(")):
        low, high = (None if v == "None" else float(v) for v in re.findall(r"[-\w.]+", name.split("(", 1)[1]))
        return low, high
    return {cli_args.positive_int: (1, None), cli_args.non_negative_int: (0, None),
            cli_args.positive_float: (0, None), cli_args.non_negative_float: (0, None),
            cli_args.fraction: (0, 1), cli_args.open_fraction: (0, 1)}[type_]


junk = st.text(min_size=0, max_size=12).filter(  # (argparse drops a value of "--")
    lambda t: t != "--" and (not _is_number(t) or not math.isfinite(float(t))))
specials = st.sampled_from(["nan", "NaN", "inf", "-inf", "1e400", "-1e400", "", " ", "½", "٣", "0x10", "1_0", "1_0j",
                            "\u202e5", "5 5"])


def bad_numbers(type_):
    low, high = _bounds(type_)
    strategies = [junk, specials, st.integers(max_value=-1).map(str),
                  st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False).map(repr)]
    if low is not None and low > 0:
        strategies.append(st.integers(min_value=-10**6, max_value=math.ceil(low) - 1).map(str))
    if type_ in (cli_args.positive_float,):
        strategies.append(st.sampled_from(["0", "0.0", "-0.0"]))
    if high is not None:
        strategies.append(st.integers(min_value=int(high) + 1, max_value=10**30).map(str))
        strategies.append(st.floats(min_value=high + 1e-6, max_value=1e300).map(repr))
    if type_ is cli_args.open_fraction:
        strategies.append(st.sampled_from(["1", "1.0"]))
    return st.one_of(*strategies)


names = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=16).filter(
    lambda t: t not in (".", "..") and not t.startswith("-"))


def bad_paths(type_, tmp):
    folder, file = tmp / "a folder", tmp / "a file.txt"
    missing = names.map(lambda n: str(tmp / "missing" / n))
    if type_ is cli_args.existing_dir or type_.__name__.startswith("dir_or_keyword("):
        return st.one_of(missing, st.just(str(file)))
    if type_ is cli_args.existing_path:
        return missing
    return st.one_of(missing, st.just(str(folder)))  # a file is needed: a folder is refused


def bad_outputs(type_, tmp):
    suffixes = tuple(re.findall(r"'(\.[\w.]+)'", type_.__name__))
    wrong = names.filter(lambda n: not n.lower().endswith(suffixes)).map(lambda n: str(tmp / n) + ".txt")
    if not suffixes:  # output_target(): a folder; a name like a file is refused
        return wrong
    folder = tmp / f"folder{suffixes[0]}"
    return st.one_of(wrong, st.just(str(folder)))


def bad_choices(choices):
    return st.text(max_size=12).filter(lambda t: t not in choices and not t.startswith("-"))


def _argv(words, action, value):
    if action.option_strings:
        return [*words, f"{action.option_strings[0]}={value}"]
    before = REQUIRED_BEFORE.get(" ".join(words), [])
    fillers = ["x"] * (before.index(action) if action in before else 0)  # e.g. convert MODEL before OUT
    return [*words, "--", *fillers, value]  # a positional (values that look like options stay values)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-properties")
    (root / "a folder").mkdir()
    (root / "a file.txt").write_text("x\n")
    for suffix in (".png", ".html", ".json", ".pdf", ".svg", ".htm", ".npy", ".safetensors"):
        (root / f"folder{suffix}").mkdir()
    return root


@pytest.mark.parametrize("words,action", OPTIONS,
                         ids=[f"{' '.join(w)} {a.option_strings[0] if a.option_strings else a.dest}"
                              for w, a in OPTIONS])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bad_values_are_refused_at_parse_time_naming_the_option(tmp, capsys, words, action, data):
    kind = _kind(action.type)
    if kind == "number":
        value = data.draw(bad_numbers(action.type))
    elif kind == "path":
        value = data.draw(bad_paths(action.type, tmp))
    elif kind == "output":
        value = data.draw(bad_outputs(action.type, tmp))
    elif kind == "separator":
        value = data.draw(st.text(min_size=2, max_size=6).filter(lambda t: t not in ("tab", "\\t", "auto")))
    else:
        value = data.draw(bad_choices(action.choices))
    capsys.readouterr()
    status = main(_argv(words, action, value))
    err = capsys.readouterr().err
    assert status == 2, (value, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    name = "/".join(action.option_strings) if action.option_strings else (action.metavar or action.dest)
    assert lines[0].startswith(f"anyclip {' '.join(words)}: error: argument {name}"), lines[0]


def test_every_numeric_option_is_covered():
    """The property reaches the options the issue names (a new typed option is picked up automatically)."""
    covered = {(" ".join(w), a.option_strings[0] if a.option_strings else a.dest) for w, a in OPTIONS}
    for expected in [("embed", "--max-pixels"), ("classify", "--top-k"), ("classify", "--batch-size"),
                     ("search", "--top-k"), ("train", "--beta1"), ("train", "--ema-decay"), ("train", "--lr"),
                     ("train", "--epochs"), ("plot", "--dpi"), ("plot", "--output"), ("eval", "--confusion-png"),
                     ("data shapes", "--shard-size"), ("index", "--target-recall"),
                     ("embed", "--output"), ("index", "--output"), ("convert", "out"), ("data shapes", "out")]:
        assert expected in covered, expected
