"""Options from plain data (a recipe's YAML, a saved plan) checked against a dataclass's field types before use.

One schema for every config: the dataclass itself. Its field annotations say the type, its `__post_init__` says
the ranges. `build` checks names and types first (naming the option, the value and what is expected), then
constructs, so a range error arrives as the config's own ConfigError and nothing else escapes.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing

from .errors import ConfigError

_NONE = type(None)


def describe_type(hint) -> str:
    """What a field annotation accepts, in words a YAML writer understands."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is _NONE else describe_type(a) for a in args)
    if origin is tuple or hint is tuple:
        return f"a list ({describe_type(args[0])} each)" if args else "a list"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in hint)
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text", dict: "a mapping"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def matches(value, hint) -> bool:
    """Whether a plain value (from YAML or JSON) fits a field annotation; a list fits a tuple, an int a float."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if hint is _NONE:
        return value is None
    if origin is tuple or hint is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        inner = args[0] if args else typing.Any
        return inner is typing.Any or all(matches(v, inner) for v in value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return any(value == m.value or value is m for m in hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is typing.Any:
        return True
    return isinstance(value, hint)


def shown(value) -> str:
    """A short repr of any value: bounded in depth and length, so a huge or deeply nested input prints a few words."""
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother, short.maxlist, short.maxdict = 2, 60, 60, 4, 4
    return short.repr(value)


def check_options(cls, options, where: str, *, scalar_lists: bool = False) -> dict:
    """Check a mapping's keys and value types against dataclass `cls`; returns the options as a dict.

    Args:
        where: how the error names the place, e.g. "recipe.yaml: step 2 (prune)".
        scalar_lists: a single value stands for a one-element list (`imgsz: 640` for `imgsz: [640]`).
    Raises:
        ConfigError: not a mapping, an unknown option, or a value of the wrong type (named with what it expects).
    """
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ConfigError(
            f"{where}: the options must be a mapping of name: value, got {shown(options)}",
            f"write e.g. {{{_first_field(cls)}: ...}}; options: {', '.join(_fields(cls))}",
        )
    hints = typing.get_type_hints(cls)
    checked = {}
    for key, value in options.items():
        if not isinstance(key, str) or key not in hints or key not in _fields(cls):
            raise ConfigError(f"{where}: unknown option {shown(key)}", f"options: {', '.join(_fields(cls))}")
        hint = hints[key]
        if scalar_lists and _is_tuple(hint) and not isinstance(value, (list, tuple)) and value is not None:
            value = [value]
        if not matches(value, hint):
            raise ConfigError(
                f"{where}: option {key} must be {describe_type(hint)}, got {shown(value)}",
                f"fix the value of {key}",
            )
        checked[key] = tuple(value) if _is_tuple(hint) and isinstance(value, list) else value
    return checked


def build(cls, options, where: str, *, scalar_lists: bool = False):
    """`cls(**options)` after `check_options`; a range error names `where`, and no other exception escapes."""
    checked = check_options(cls, options, where, scalar_lists=scalar_lists)
    try:
        return cls(**checked)
    except ConfigError as exc:
        problem = exc.problem if exc.problem.startswith(where) else f"{where}: {exc.problem}"
        raise ConfigError(problem, exc.fix) from exc
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a nested value the types could not see
        raise ConfigError(
            f"{where}: {type(exc).__name__}: {exc}", f"check the options: {', '.join(_fields(cls))}"
        ) from exc


def _fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def _first_field(cls) -> str:
    return _fields(cls)[0] if _fields(cls) else "option"


def _is_tuple(hint) -> bool:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_is_tuple(a) for a in typing.get_args(hint))
    return hint is tuple or typing.get_origin(hint) is tuple
