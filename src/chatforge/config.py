"""Typed configs with help text beside each field: one source for the Python API, the CLI and YAML files.

A stage declares its config as a dataclass whose fields are made with `option(...)`:

    @dataclass
    class GenerateConfig:
        max_tokens: int = option(256, "Most new tokens to generate.")

`add_arguments(parser, GenerateConfig)` turns it into `--max-tokens` flags; `build(GenerateConfig, args,
yaml_file)` merges defaults < YAML < command line into a config object. Stages import only this module
and the standard library at import time, so `chatforge --help` stays instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

from chatforge.errors import ChatforgeError


def option(default: Any = dataclasses.MISSING, help: str = "", *, choices=None, flag: str | None = None,
           short: str | None = None, cli: bool = True, parse=None, metavar: str | None = None):
    """A config field with its help text. `parse` turns a CLI/YAML string into the value (e.g. 'auto' or an int)."""
    meta = {"help": help, "choices": choices, "flag": flag, "short": short, "cli": cli, "parse": parse,
            "metavar": metavar}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def whole_number(s: str) -> int:
    """A CLI/YAML parser for any integer (the range rules below build on it)."""
    try:
        return int(s)
    except ValueError:  # argparse would say "invalid positive_int value", naming this module's function
        raise argparse.ArgumentTypeError(f"not a whole number: {s!r}") from None


def positive_int(s: str) -> int:
    """A CLI/YAML parser for counts that must be >= 1."""
    v = whole_number(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def non_negative_int(s: str) -> int:
    """A CLI/YAML parser for counts that may be 0."""
    v = whole_number(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _number(s: str) -> float:
    """A finite number: "inf" (or YAML's 1e309, .inf) would train at an infinite learning rate, "nan" compare
    false to every bound."""
    import math

    try:
        v = float(s)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {v}")
    return v


def positive_float(s: str) -> float:
    """A CLI/YAML parser for amounts that must be > 0 (nan refused)."""
    v = _number(s)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


def non_negative_float(s: str) -> float:
    v = _number(s)
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def fraction(s: str) -> float:
    """A share: 0 <= v < 1."""
    v = _number(s)
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {v}")
    return v


def check_values(config) -> None:
    """Every field of a config object that has a `parse` rule obeys it: the Python API's configs get the checks
    the CLI and YAML files get, before a stage starts (an error names the option, as the CLI's would)."""
    for f in dataclasses.fields(config):
        value, parse = getattr(config, f.name), f.metadata.get("parse")
        if parse is None or value is None or isinstance(value, bool):
            continue
        try:
            parse(str(value))
        except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
            raise ChatforgeError(f"{_flag(f)} {value}: {e}") from None


def _base_type(tp):
    """int | None -> int; list[str] -> list."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else str
    return origin or tp


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, cls, *, exclude: tuple[str, ...] = ()) -> None:
    """Add one flag per field of `cls`. Defaults stay None in argparse so `build` knows what was given."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude or not f.metadata.get("cli", True):
            continue
        tp = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        help_text = f.metadata.get("help", "")
        if default not in (None, "", [], False) and tp is not bool:
            help_text += f" (default: {default})"
        names = [_flag(f)] + ([f.metadata["short"]] if f.metadata.get("short") else [])
        # argparse %-formats help strings: a literal "%" (as in "30% slower") must be doubled.
        kw: dict[str, Any] = {"dest": f.name, "default": None, "help": help_text.replace("%", "%%")}
        if tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif tp is list:
            kw["nargs"] = "+"
            if f.metadata.get("metavar"):
                kw["metavar"] = f.metadata["metavar"]
        else:
            kw["type"] = f.metadata.get("parse") or (tp if tp in (int, float) else str)
            kw["choices"] = f.metadata.get("choices")
            kw["metavar"] = f.metadata.get("metavar") or (None if kw["choices"] else f.name.upper())
        parser.add_argument(*names, **kw)


def load_yaml(path: str | Path) -> tuple[dict, dict[str, int]]:
    """Read a YAML mapping and the line of each top-level key (for errors that name file:line); a clear error
    (file and line) when it is not a mapping."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ChatforgeError(f"{path}: cannot read config file ({e.strerror})") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ChatforgeError(f"{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    finally:
        loader.dispose()
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ChatforgeError(f"{path}: a config file must be a mapping of option: value")
    lines = {str(key.value): key.start_mark.line + 1 for key, _ in node.value}
    return data, lines


def _coerce(cls, name: str, value: Any, f: dataclasses.Field, where: str):
    """Check/convert a YAML value to the field's type, with an error naming the file and key."""
    tp = _base_type(typing.get_type_hints(cls)[name])
    parse = f.metadata.get("parse")
    if value is None:
        return None
    try:
        if parse is not None and not isinstance(value, bool):
            return parse(str(value))
        if tp is bool and isinstance(value, bool):
            return value
        if tp is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if tp is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if tp is list and isinstance(value, list):
            return value
        if tp is dict and isinstance(value, dict):
            return value
    except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
        raise ChatforgeError(f"{where}: {name}: {e}") from None
    raise ChatforgeError(f"{where}: {name} must be of type {getattr(tp, '__name__', tp)}, got {value!r}")


def from_mapping(cls, data: dict, where: str, lines: dict[str, int] | None = None) -> dict[str, Any]:
    """Check and convert a mapping of option -> value (a YAML file, a web form) to field values; errors name
    `where` (with the option's line, when `lines` has it) and the option. Unknown keys are an error."""
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    lines = lines or {}

    def at(key) -> str:
        return f"{where}:{lines[str(key)]}" if str(key) in lines else where

    unknown = [k for k in data if k not in by_name]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), list(by_name), n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else f"; known: {', '.join(sorted(by_name))}"
        raise ChatforgeError(f"{at(unknown[0])}: unknown option {unknown[0]}{hint}")
    values = {k: _coerce(cls, k, v, by_name[k], at(k)) for k, v in data.items()}
    for k, v in values.items():
        choices = by_name[k].metadata.get("choices")
        if choices and v is not None and v not in choices:
            raise ChatforgeError(f"{at(k)}: {k} must be one of {', '.join(map(str, choices))}, not {v!r}")
    return values


def describe(cls) -> list[dict]:
    """The fields of a config as plain data (name, flag, type, default, help, choices): for forms and docs."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        tp = _base_type(hints[f.name])
        out.append({"name": f.name, "flag": _flag(f), "type": getattr(tp, "__name__", str(tp)),
                    "default": default, "help": f.metadata.get("help", ""), "choices": f.metadata.get("choices"),
                    "cli": f.metadata.get("cli", True)})
    return out


def build(cls, args: argparse.Namespace | None = None, yaml_file: str | Path | None = None, **overrides):
    """defaults < YAML file < command line < overrides. Unknown YAML keys are an error."""
    values: dict[str, Any] = {}
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    if yaml_file:
        data, lines = load_yaml(yaml_file)
        values.update(from_mapping(cls, data, str(yaml_file), lines))
    if args is not None:
        for k in by_name:
            v = getattr(args, k, None)
            if v is not None:
                values[k] = v
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**values)


def to_dict(cfg) -> dict:
    """A plain dict (paths as strings) for writing next to a run."""
    out = {}
    for k, v in dataclasses.asdict(cfg).items():
        out[k] = str(v) if isinstance(v, Path) else v
    return out


def save_yaml(cfg, path: str | Path) -> None:
    import yaml

    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), encoding="utf-8")
