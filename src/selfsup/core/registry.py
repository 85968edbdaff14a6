"""A tiny name → factory registry (the timm pattern), shared by backbones, methods and tasks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from selfsup.core.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """``@REG.register("name")`` on a factory; ``REG.create("name", **kw)``; ``REG.names()``."""

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._factories[name] = factory
            return factory

        return deco

    def names(self) -> list[str]:
        return sorted(self._factories)

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._factories:
            raise UserError(f"unknown {self.kind} {name!r}: choose from {', '.join(self.names())}")
        return self._factories[name]

    def create(self, name: str, **kwargs) -> T:
        return self.get(name)(**kwargs)
