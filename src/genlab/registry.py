"""Registries: models, data sets and (later) feature extractors are looked up by name.

    @register_model("vae")
    class VAE(GenModel): ...

    create_model("vae", latent=20)
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable

from .errors import GenlabError


@dataclass
class Entry:
    name: str
    obj: Any
    description: str


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, description: str | None = None) -> Callable[[Any], Any]:
        def deco(obj: Any) -> Any:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            lines = (obj.__doc__ or "").strip().splitlines()
            self._entries[name] = Entry(name, obj, description or (lines[0] if lines else ""))
            return obj

        return deco

    def get(self, name: str) -> Any:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry:
        if not isinstance(name, str):  # e.g. `name = 3` in a config file
            raise GenlabError(f"{self.kind} name: expected a string, got {name!r}; known: {', '.join(sorted(self._entries))}")
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise GenlabError(
                f"unknown {self.kind} {name!r}{hint}; known: {', '.join(sorted(self._entries))}"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]


MODELS = Registry("model")
DATASETS = Registry("dataset")


def register_model(name: str, description: str | None = None):
    return MODELS.register(name, description)


def register_dataset(name: str, description: str | None = None):
    return DATASETS.register(name, description)
