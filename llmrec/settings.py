"""Frozen dataclass settings from TOML: typed parsing, `key.sub=value` overrides, dumping.

The machinery under `llmrec/config.py`. A field's type is its rule: `int`, `float`, `str`, `bool`,
`tuple[...]`, `X | None`, `Literal[...]` (a closed choice), a nested dataclass (a sub-table such
as `[rank.ray]`) or `Sections` (one sub-table per entry of a registry, each parsed by that entry's
own settings dataclass: `[baseline.bpr]`, `[backend.vllm]`, `[train.lora]`). Unknown keys are
errors that list the known ones, and a key that moved is an error naming its new place.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from llmrec import registry
from llmrec.errors import ConfigError

T = TypeVar("T")


class Sections(Mapping[str, Any]):
    """The settings tables of one registry's entries, by section name (`bpr`, `vllm`, `lora`).

    Only the tables given (or filled in by `with_defaults`) are held; `settings(name)` gives an
    entry's table or its defaults. The registry is named, not held, so configs pickle cheaply.
    """

    def __init__(self, registry_name: str, values: Mapping[str, Any] | None = None) -> None:
        self.registry_name = registry_name
        self._values = dict(values or {})

    @property
    def registry(self) -> registry.Registry:
        return getattr(registry, self.registry_name)

    def __getitem__(self, section: str) -> Any:
        return self._values[section]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sections) and (self.registry_name, self._values) == (other.registry_name,
                                                                                     other._values)

    def __hash__(self) -> int:
        return hash((self.registry_name, tuple(sorted(self._values))))

    def __repr__(self) -> str:
        return f"Sections({self.registry_name}, {self._values!r})"

    def settings(self, name: str) -> Any:
        """The settings of registry entry `name` (its table, else its defaults); None if it has none."""
        entry = self.registry.entry(name)
        cls = entry.settings_class()
        if cls is None:
            return None
        return self._values.get(entry.section) or cls()

    def with_defaults(self, name: str) -> Sections:
        """A copy holding entry `name`'s table, filled with its defaults when it was not given."""
        entry = self.registry.entry(name)
        cls = entry.settings_class()
        if cls is None or entry.section in self._values:
            return self
        return Sections(self.registry_name, {**self._values, entry.section: cls()})


def sections_field(registry_name: str, flat: bool = False) -> Any:
    """A `Sections` field: `flat` tables sit among the section's own keys (`[baseline.bpr]` next to
    `baseline.name`); otherwise the field is a table of tables (`[backend.hf]`)."""
    return dataclasses.field(default_factory=lambda: Sections(registry_name),
                             metadata={"sections": registry_name, "flat": flat})


# Keys that moved (old dotted key -> message naming the new place); `{name}` is filled with the value
# of the table's selector (baseline.name), `{sub}` with the first key of a moved table.
MOVED: dict[str, str] = {}


def check_choices(obj: Any, section: str) -> None:
    """Refuse a value outside a `Literal` field's choices (for sections built directly, not only
    from TOML, whose parsing checks them too)."""
    for name, tp in typing.get_type_hints(type(obj)).items():
        if typing.get_origin(tp) is typing.Literal:
            _coerce(getattr(obj, name), tp, f"{section}.{name}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check a TOML value against a field type; convert lists to tuples and ints to floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {tp}; got {value!r}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices or type(value) is bool:
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, choices))}; got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list; got {value!r}")
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table; got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()  # a TOML date or date-time where text is expected: its ISO text
    if tp in (int, float, str, bool):
        if type(value) is not tp:
            raise ConfigError(f"{key}: expected {_type_name(tp)}; got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported field type {tp}")


def _sections(registry_name: str, tables: dict[str, Any], prefix: str) -> Sections:
    reg = getattr(registry, registry_name)
    values = {}
    for section, table in tables.items():
        entry = reg.by_section(section)
        if entry is None:
            known = sorted(e.section for e in reg if e.settings is not None)
            raise ConfigError(f"unknown config table '{prefix}{section}'; {reg.kind} tables: {known}")
        values[section] = _coerce(table, entry.settings_class(), f"{prefix}{section}")
    return Sections(registry_name, values)


def _moved(key: str, data: dict[str, Any], value: Any) -> None:
    """A moved key (or table: its first key is named) is an error naming where it went."""
    if key in MOVED:
        sub = next(iter(value)) if isinstance(value, dict) and value else ""
        shown = f"{key}.{sub}" if sub else key
        raise ConfigError(f"config key '{shown}' moved: "
                          f"{MOVED[key].format(name=data.get('name', '<name>'), sub=sub or '<key>')}")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass `cls` from a nested dict, rejecting unknown keys with their full name."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    flat = next((f for f in fields.values() if f.metadata.get("flat")), None)
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    defaults = {n: f.default for n, f in fields.items() if f.default is not dataclasses.MISSING}
    for key, value in data.items():
        _moved(f"{prefix}{key}", {**defaults, **data}, value)
        f = fields.get(key)
        if f is not None and "sections" in f.metadata and not f.metadata.get("flat"):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{key}: expected a table of tables; got {value!r}")
            kwargs[key] = _sections(f.metadata["sections"], value, f"{prefix}{key}.")
        elif f is not None and f is not flat:
            kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
        elif flat is not None and isinstance(value, dict):
            extra[key] = value
        else:
            known = sorted(n for n, x in fields.items() if x is not flat)
            raise ConfigError(f"unknown config key '{prefix}{key}'; known keys: {known}"
                              + (f" and the [{prefix}<name>] tables of each {getattr(registry, flat.metadata['sections']).kind}"
                                 if flat is not None else ""))
    if flat is not None and extra:
        kwargs[flat.name] = _sections(flat.metadata["sections"], extra, prefix)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config (tuples as lists, sections as tables) for printing and saving."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            out: dict[str, Any] = {}
            for f in dataclasses.fields(v):
                value = getattr(v, f.name)
                if f.metadata.get("flat"):
                    out.update({k: conv(x) for k, x in value.items()})
                else:
                    out[f.name] = conv(value)
            return out
        if isinstance(v, Sections):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(cfg)


def _parse_value(text: str) -> Any:
    """Parse an override value as TOML (numbers, booleans, lists); bare words stay strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings to a nested dict (a copy)."""
    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a table")
        node[parts[-1]] = _parse_value(text.strip())
    return out


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; a missing, non-UTF-8 or malformed file is one ConfigError naming it."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save the config as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


def dump_toml(cfg: Any) -> str:
    """Serialise a config as TOML (the resolved config a run saves and `--show-config` prints)."""

    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        raise TypeError(v)

    def table(name: str, d: dict[str, Any], lines: list[str]) -> None:
        scalars = [(k, v) for k, v in d.items() if not isinstance(v, dict) and v is not None]
        if name and (scalars or not any(isinstance(v, dict) for v in d.values())):
            lines.append(f"\n[{name}]")
        lines.extend(f"{k} = {val(v)}" for k, v in scalars)
        for k, v in d.items():
            if isinstance(v, dict):
                table(f"{name}.{k}" if name else k, v, lines)

    lines: list[str] = []
    table("", to_dict(cfg), lines)
    return "\n".join(lines).lstrip("\n") + "\n"
