"""One small registry for every kind of pluggable unit: dataset adapters, quality metrics, backbones.

Model: timm's ``_registry.py``. A :class:`Registry` maps a name to an entry (a class, or a spec holding a factory):

* the name is said in **one** place. A class registry (``named_by="attribute"``: adapters, metrics) takes it from
  the class's ``name`` attribute (``@reg.register`` on the class); a factory registry (``named_by="argument"``:
  backbones) takes it from the decorator's argument (``@reg.register("tiny")`` on the function, or
  :meth:`Registry.add` with a spec built around it);
* registering a name twice is refused with :class:`RegistrationError` naming both definitions (the
  same definition seen again, e.g. after ``importlib.reload``, replaces itself);
* the package's modules are discovered lazily, **once**: the first lookup imports every module of ``package``
  (``pkgutil.iter_modules``, sorted by name, skipping ``_private`` ones and ``skip``), under a lock;
* :meth:`Registry.list` gives the sorted names (optionally filtered), :meth:`Registry.get` the entry and
  :meth:`Registry.create` calls it; an unknown name raises :class:`UnknownNameError`, whose message
  lists the known names.

Example (``mypkg/widgets/knob.py`` and its siblings each register one widget)::

    widgets = Registry("widget", "mypkg.widgets")

    @widgets.register
    class Knob:
        name = "knob"

    widgets.list()          # ['knob', ...]: imports mypkg.widgets.* the first time
    widgets.create("knob")  # Knob()
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import threading
from typing import Any, Callable, Generic, Iterator, TypeVar

from dfkit.errors import DfkitError

T = TypeVar("T")


class UnknownNameError(DfkitError, KeyError, ValueError):
    """A name that a registry (datasets, quality metrics, backbones) does not know; the message lists the known
    names. A :class:`~dfkit.errors.DfkitError` (one line on the command line), and also a ``KeyError`` and a
    ``ValueError``, the types these lookups raised before they shared one registry."""

    __str__ = Exception.__str__  # KeyError's would quote the message


class RegistrationError(DfkitError, ValueError):
    """A unit registered without a name, or under a name another unit already holds (a programming error in the
    unit's module, raised when the registry imports it)."""


class Registry(Generic[T]):
    """Named entries of one kind.

    Args:
        kind: what the entries are, for messages (``"dataset"``, ``"quality metric"``, ``"backbone"``).
        package: dotted name of the package whose modules define the entries (imported once, on first lookup);
            None: nothing to discover (entries are only those registered explicitly).
        named_by: ``"attribute"`` (``register(cls)`` reads ``cls.name``) or ``"argument"`` (``register(name)``
            decorates a factory).
        skip: module names of ``package`` not to import (besides those starting with ``_``).
    """

    def __init__(self, kind: str, package: str | None = None, *, named_by: str = "attribute",
                 skip: tuple[str, ...] = ()) -> None:
        if named_by not in ("attribute", "argument"):
            raise ValueError(f"named_by must be 'attribute' or 'argument', got {named_by!r}")
        self.kind = kind
        self.package = package
        self.named_by = named_by
        self.skip = tuple(skip)
        self._entries: dict[str, T] = {}
        self._lock = threading.RLock()
        self._discovered = package is None
        self._discovering = False

    # -- registration ----------------------------------------------------------------------------------------------
    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; refuses a name another definition already holds."""
        if not isinstance(name, str) or not name:
            raise RegistrationError(f"{self.kind} {_where(entry)} has no name")
        with self._lock:
            other = self._entries.get(name)
            if other is not None and not _same_definition(other, entry):
                raise RegistrationError(f"{self.kind} {name!r} is registered twice: by {_where(other)} and by "
                                        f"{_where(entry)}; rename one of them")
            self._entries[name] = entry
        return entry

    def register(self, obj: Any = None, /) -> Any:
        """Decorator. ``named_by="attribute"``: ``@reg.register`` on a class with a ``name`` attribute.
        ``named_by="argument"``: ``@reg.register("name")`` on a factory function."""
        if self.named_by == "attribute":
            if isinstance(obj, str) or obj is None:
                raise TypeError(f"{self.kind}s are named by their class's `name` attribute: use @register on the "
                                "class, without an argument")
            self.add(getattr(obj, "name", ""), obj)
            return obj
        if not isinstance(obj, str):
            raise TypeError(f"{self.kind}s are named by the decorator's argument: use @register(\"name\")")
        name = obj

        def deco(factory: T) -> T:
            self.add(name, factory)
            return factory

        return deco

    # -- discovery -------------------------------------------------------------------------------------------------
    def discover(self) -> None:
        """Import every module of ``package`` once (later calls return at once; reentrant calls made while the
        modules are being imported see what is registered so far)."""
        if self._discovered:
            return
        with self._lock:
            if self._discovered or self._discovering:
                return
            self._discovering = True
            try:
                pkg = importlib.import_module(self.package)  # type: ignore[arg-type]
                for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
                    if not mod.name.startswith("_") and mod.name not in self.skip:
                        importlib.import_module(f"{pkg.__name__}.{mod.name}")
                self._discovered = True
            finally:
                self._discovering = False

    # -- lookup ----------------------------------------------------------------------------------------------------
    def list(self, filter: Callable[[T], bool] | str | None = None) -> list[str]:
        """Registered names, sorted. ``filter``: a predicate on the entry, or an ``fnmatch`` pattern on the name."""
        self.discover()
        names = sorted(self._entries)
        if filter is None:
            return names
        if isinstance(filter, str):
            import fnmatch

            return [n for n in names if fnmatch.fnmatchcase(n, filter)]
        return [n for n in names if filter(self._entries[n])]

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs, sorted by name."""
        self.discover()
        return sorted(self._entries.items())

    def get(self, name: str) -> T:
        """The entry registered as ``name``; :class:`UnknownNameError` listing the known names."""
        self.discover()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.unknown_message(name)) from None

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``get(name)(*args, **kwargs)``: an instance of a registered class, or what a factory returns."""
        return self.get(name)(*args, **kwargs)  # type: ignore[operator]

    def unknown_message(self, name: Any) -> str:
        known = self.list()
        hint = difflib.get_close_matches(str(name), known, n=1)
        return (f"unknown {self.kind} {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; known: {', '.join(known) or 'none'}")

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        self.discover()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.package!r}, {len(self._entries)} registered)"


def _definition(entry: Any) -> str | None:
    """``module.qualname`` of a class or function entry (or of the factory function a spec holds), else None."""
    import inspect

    target = getattr(entry, "factory", entry)
    if inspect.isclass(target) or inspect.isfunction(target):
        return f"{target.__module__}.{target.__qualname__}"
    return None


def _where(entry: Any) -> str:
    return _definition(entry) or repr(entry)


def _same_definition(a: Any, b: Any) -> bool:
    """The same unit seen again (the same object, an equal spec, or a class/function re-created by re-importing
    its module), not a second unit under a taken name."""
    if a is b:
        return True
    try:
        if a == b:
            return True
    except Exception:  # noqa: BLE001 - an entry's __eq__ may refuse a foreign type
        pass
    da = _definition(a)
    return da is not None and da == _definition(b)
