"""Name -> constructor registries with config validation.

Config names are registry names. ``build`` checks the keyword arguments against the constructor's
signature, so an unknown name lists the valid ones, an unknown key lists the accepted keys, and a
value of the wrong type names the key and the expected type.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


class Registry(Generic[T]):
    """A named collection of constructors of one kind (dataset, encoder, fusion, method, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def add(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = fn
            return fn

        return add

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}; valid {self.kind} names: {', '.join(self.names())}")
        return self._items[name]

    def build(self, name: str, kwargs: Mapping[str, Any] | None = None, *, where: str = "", **extra: Any) -> T:
        """Construct ``name`` with config ``kwargs`` (validated) plus programmatic ``extra`` arguments."""
        fn = self.get(name)
        prefix = where or self.kind
        kwargs = dict(kwargs or {})
        validate_kwargs(fn, kwargs, prefix=prefix, provided=set(extra))
        try:
            return fn(**kwargs, **extra)
        except ValueError as error:  # a constructor refusing a configured value, e.g. nn.Dropout(p=1.5)
            if type(error) is not ValueError:  # ConfigError, CheckpointError, ... already say where
                raise
            raise ConfigError(f"{prefix}: {' '.join(str(error).split())}") from error


def validate_kwargs(fn: Callable[..., Any], kwargs: Mapping[str, Any], *, prefix: str, provided: set[str]) -> None:
    """Raise ConfigError for unknown keys, missing required keys and values of the wrong type."""
    target = fn.__init__ if inspect.isclass(fn) else fn  # type: ignore[misc]
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # pragma: no cover - unresolved forward refs: skip type checks
        hints = {}
    params = {n: p for n, p in sig.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    configurable = sorted(n for n in params if n not in provided)
    for key, value in kwargs.items():
        if key not in params:
            if takes_any:
                continue
            raise ConfigError(f"{prefix}.{key}: unknown key; accepted keys: {', '.join(configurable)}")
        hint = hints.get(key)
        if hint is not None and not matches(value, hint):
            raise ConfigError(f"{prefix}.{key}: expected {type_name(hint)}, got {type(value).__name__} {value!r}")
    for name, p in params.items():
        if p.default is p.empty and name not in kwargs and name not in provided:
            raise ConfigError(f"{prefix}.{name}: required key is missing")


def matches(value: Any, hint: Any) -> bool:
    """Whether a config value fits a type hint (the subset of typing used in constructors)."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is typing.Literal:
        return value in args
    if origin in (list, tuple, Sequence, typing.Sequence) or hint in (list, tuple):
        if not isinstance(value, Sequence) or isinstance(value, str):
            return False
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return all(matches(v, args[0]) for v in value)
        if args and origin is not tuple:
            return all(matches(v, args[0]) for v in value)
        return True
    if origin in (dict, Mapping, typing.Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            return False
        if len(args) == 2:
            return all(matches(k, args[0]) and matches(v, args[1]) for k, v in value.items())
        return True
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
