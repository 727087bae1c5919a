"""Small explicit registries keyed by short names: one per extension point.

    STYLES     prompt styles (a template header's `style:`)      llmrec/scoring/styles.py
    BASELINES  classic, KG and content recommenders (`baseline.name`)  llmrec/baselines/__init__.py
    BACKENDS   scoring backends (`rank.backend`)                  llmrec/backends/__init__.py
    FORMATS    data formats (`data.format`)                       llmrec/data/loaders.py
    ADAPTERS   adapter kinds (`train.adapter`)                    llmrec/models/adapters/__init__.py
    DATASETS   published datasets by name (`data.dataset`)        llmrec/data/sources/catalog.py

An entry is registered where it is defined (`@BASELINES.register("bpr")` on the class, or one
`register` line naming "module:attribute" so that a heavy module is imported only when the entry is
used) and declares its settings (a frozen dataclass, read from the config section `[<kind>.<name>]`
where the kind has one) and its capabilities. Registering from outside the package works the same
way (tests/extending does). The built-in entries are imported on the first lookup, from the module
names listed here, so this module imports nothing of llmrec but errors and the config can consult
the registries without importing the packages above it.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from llmrec.errors import ConfigError

T = TypeVar("T")


@dataclass
class Entry:
    """One registered name: its object (or "module:attribute", imported on first use), its
    settings dataclass (None: it has none), the config section those settings live in, and any
    capabilities it declares."""

    name: str
    target: Any
    settings: Any = None  # a dataclass, or DERIVE: from the target's constructor (`derived_settings`)
    section: str = ""
    capabilities: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Any:
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            self.target = getattr(importlib.import_module(module), attr)
        return self.target

    def settings_class(self) -> type | None:
        return derived_settings(self.load()) if self.settings is DERIVE else self.settings


DERIVE = "derive"
_PLAIN = (int, float, str, bool)


def derived_settings(cls: type) -> type:
    """A frozen dataclass of the constructor's plainly typed parameters (int, float, str, bool),
    with the constructor's defaults: the settings of a class that declares none itself. Kept on
    the class as `Settings` (so configs holding it pickle); `seed` and `verbose` are not settings."""
    import typing

    if "Settings" in vars(cls):
        return cls.Settings
    hints = typing.get_type_hints(cls.__init__)
    fields = []
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name in ("self", "seed", "verbose") or hints.get(p.name) not in _PLAIN:
            continue
        if p.default is inspect.Parameter.empty:
            raise TypeError(f"{cls.__name__}.{p.name}: a setting needs a default")
        fields.append((p.name, hints[p.name], dataclasses.field(default=p.default)))
    settings = dataclasses.make_dataclass("Settings", fields, frozen=True)
    settings.__module__, settings.__qualname__ = cls.__module__, f"{cls.__qualname__}.Settings"
    cls.Settings = settings
    return settings


class Registry(Generic[T]):
    """Names -> entries for one extension point; `key` is the config key that names an entry."""

    def __init__(self, kind: str, key: str, builtins: tuple[str, ...] = ()) -> None:
        self.kind, self.key, self._builtins = kind, key, builtins
        self._entries: dict[str, Entry] = {}
        self._loaded = False

    def _load_builtins(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._builtins:
                importlib.import_module(module)

    def register(self, name: str, target: Any = None, *, settings: type | None = None, section: str = "",
                 **capabilities: Any) -> Any:
        """Register `target` under `name`; without a target, a decorator registering what it decorates.
        Registering a name again replaces the entry (a plugin may override a built-in)."""
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ConfigError(f"{self.kind} name {name!r}: letters, digits, - and _ only")

        def add(obj: Any) -> Any:
            self._entries[name] = Entry(name, obj, settings, section or name, capabilities)
            return obj

        return add if target is None else add(target)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def entry(self, name: str) -> Entry:
        self._load_builtins()
        if name not in self._entries:
            raise ConfigError(f"{self.key}: unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._entries[name]

    def get(self, name: str) -> T:
        """The registered object (a class or factory), imported now if registered by name."""
        return self.entry(name).load()

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        self._load_builtins()
        return iter([self._entries[n] for n in sorted(self._entries)])

    def by_section(self, section: str) -> Entry | None:
        """The entry whose settings live in config section `section` (None: no such entry)."""
        return next((e for e in self if e.section == section and e.settings is not None), None)

    def settings_of(self, name: str) -> type | None:
        """The settings dataclass of entry `name` (None: it takes no settings)."""
        return self.entry(name).settings_class()


STYLES: Registry[Any] = Registry("prompt style", "template header 'style'", ("llmrec.scoring.styles",))
BASELINES: Registry[Callable[..., Any]] = Registry("baseline", "baseline.name", ("llmrec.baselines",))
BACKENDS: Registry[Callable[..., Any]] = Registry("backend", "rank.backend", ("llmrec.backends",))
FORMATS: Registry[Callable[..., Any]] = Registry("data format", "data.format", ("llmrec.data.loaders",))
ADAPTERS: Registry[Any] = Registry("adapter kind", "train.adapter", ("llmrec.models.adapters",))
DATASETS: Registry[Any] = Registry("dataset", "data.dataset", ("llmrec.data.sources.catalog",))
