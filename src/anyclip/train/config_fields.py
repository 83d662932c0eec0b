"""The machinery of :mod:`anyclip.train.config`: a dataclass field that is also a command-line flag
(:func:`flag`), checked and converted on construction, and :class:`Section`, the base of the config classes.

Example:
    >>> import dataclasses
    >>> @dataclasses.dataclass(frozen=True)
    ... class Epochs(Section):
    ...     epochs: int = flag(1, "passes over the data", minimum=1)
    >>> Epochs.from_flags(epochs=3).flags()
    {'epochs': 3}
"""

# No ``from __future__ import annotations`` here: a field's type must stay a class, which is how a field
# holding a section is told from a flag.
import argparse
import dataclasses
import numbers
import os

__all__ = ["Section", "flag", "is_section"]


@dataclasses.dataclass(frozen=True)
class _Flag:
    """How a field is a flag: the value's kind (bool, int, float, str or tuple of str) and argparse's extras."""

    kind: type
    help: str | None
    aliases: tuple = ()
    choices: tuple | None = None
    minimum: int | None = None
    metavar: str | None = None
    arg_type: object = None


def flag(default=dataclasses.MISSING, help=None, *, kind=None, aliases=(), choices=None, minimum=None,
         metavar=None, arg_type=None):
    """A config field that is also the flag ``--<name-with-dashes>``; no ``default`` makes the flag required.

    ``kind`` is needed only when the default (``None``) does not tell it; a ``bool`` field is a
    ``store_true`` flag, a ``tuple`` field takes any number of values. ``minimum`` is checked on construction.
    ``arg_type`` is the command line's argument type (an :mod:`anyclip.cli_args` function such as ``positive_int``),
    which checks the flag's text at parse time; without it the flag is parsed as ``kind``.

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Steps(Section):
        ...     warmup: int = flag(0, "warmup steps", minimum=0)
        >>> Steps(warmup=-1)
        Traceback (most recent call last):
        ValueError: --warmup must be >= 0, got -1
    """
    if kind is None:
        kind = str if default is None or default is dataclasses.MISSING else type(default)
    spec = _Flag(kind, help, tuple(aliases), None if choices is None else tuple(choices), minimum, metavar, arg_type)
    return dataclasses.field(default=default, metadata={"flag": spec})


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def is_section(field) -> bool:
    """Whether the dataclass ``field`` holds a nested :class:`Section` (not a flag)."""
    return isinstance(field.type, type) and issubclass(field.type, Section)


_EXPECTED = {bool: "True or False", int: "an integer", float: "a number", str: "a string or path",
             tuple: "a sequence of strings"}


def _checked(field, value):
    """``value`` of a flag field, converted to its kind (a path to str, an int to float, a list to a tuple)."""
    spec, name = field.metadata["flag"], _option(field.name)
    if value is None and field.default is None:
        return None
    kind = spec.kind
    if kind is tuple and not isinstance(value, (str, bytes)) and hasattr(value, "__iter__"):
        value = tuple(value)
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind in (int, float):
        ok = isinstance(value, numbers.Integral if kind is int else numbers.Real) and not isinstance(value, bool)
    elif kind is tuple:
        ok = isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, (str, os.PathLike))
    if not ok:
        raise TypeError(f"{name} takes {_EXPECTED[kind]}, got {value!r}")
    value = os.fspath(value) if kind is str else kind(value)
    if spec.choices is not None and value not in spec.choices:
        raise ValueError(f"{name} must be one of {', '.join(spec.choices)}, got {value!r}")
    if spec.minimum is not None and value < spec.minimum:
        raise ValueError(f"{name} must be >= {spec.minimum}, got {value}")
    return value


class Section:
    """Base of the config classes: on construction each flag's value is checked (kind, choices, minimum) and
    converted, then the class's own rules run (``_check``). Fields of a :class:`Section` type nest sections.

    Example:
        >>> from anyclip.train.config import OptimConfig
        >>> OptimConfig(batch_size=32).flags()["batch_size"]
        32
    """

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if "flag" in field.metadata:
                object.__setattr__(self, field.name, _checked(field, getattr(self, field.name)))
        self._check()

    def _check(self) -> None:
        """Rules between this section's fields (each error names the flags)."""

    @classmethod
    def flag_fields(cls) -> list:
        """Every flag field of this section and the sections in it, in the order of the flags."""
        out = []
        for field in dataclasses.fields(cls):
            out.extend(field.type.flag_fields() if is_section(field) else [field])
        return out

    @classmethod
    def from_flags(cls, **flags):
        """A config from flag values by name (``batch_size=32``); flags not given keep their defaults.

        Example:
            >>> from anyclip.train.config import RunConfig
            >>> RunConfig.from_flags(keep=5).keep
            5
        """
        unknown = sorted(set(flags) - {field.name for field in cls.flag_fields()})
        if unknown:
            raise TypeError(f"{cls.__name__} has no flag {', '.join(map(repr, unknown))}")
        kwargs = {}
        for field in dataclasses.fields(cls):
            if is_section(field):
                kwargs[field.name] = field.type.from_flags(
                    **{f.name: flags[f.name] for f in field.type.flag_fields() if f.name in flags})
            elif field.name in flags:
                kwargs[field.name] = flags[field.name]
        return cls(**kwargs)

    def flags(self) -> dict:
        """Every flag's value by name, the sections flattened (the keys of ``anyclip train``'s parsed flags).

        Example:
            >>> from anyclip.train.config import DistributedConfig
            >>> DistributedConfig(devices=2).flags()["devices"]
            2
        """
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out.update(value.flags() if is_section(field) else {field.name: value})
        return out

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Register one flag per field (its default, help, choices; aliases after the field's own name).

        Example:
            >>> from anyclip.train.config import EvalConfig
            >>> parser = argparse.ArgumentParser(); EvalConfig.add_arguments(parser)
            >>> parser.parse_args(["--zeroshot-shapes", "16"]).zeroshot_shapes
            16
        """
        for field in cls.flag_fields():
            spec = field.metadata["flag"]
            kwargs = {"dest": field.name, "help": spec.help}
            if spec.kind is bool:
                kwargs["action"] = "store_true"
            elif field.default is dataclasses.MISSING:
                kwargs["required"] = True
            else:
                kwargs["default"] = list(field.default) if spec.kind is tuple else field.default
            if spec.arg_type is not None:
                kwargs["type"] = spec.arg_type
            elif spec.kind in (int, float):
                kwargs["type"] = spec.kind
            if spec.kind is tuple:
                kwargs["nargs"] = "*"
            for key in ("choices", "metavar"):
                if getattr(spec, key) is not None:
                    kwargs[key] = getattr(spec, key)
            parser.add_argument(_option(field.name), *spec.aliases, **kwargs)
