"""The one shape of every registry (fine-tuning methods, knowledge-base and question sources, retrievers), as
lm-evaluation-harness registers its models and tasks: name -> entry, each entry registered once, a name no
entry registers refused in one line naming the config key, the value and the registered names."""

from __future__ import annotations

from collections.abc import Iterable

from kinject.errors import KinjectError


class Registry(dict):
    """Entries (each with a ``name``) by name; ``kind`` names them in errors ("retriever", "question source")."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, entry):
        if entry.name in self:
            raise ValueError(f"{self.kind} {entry.name} is registered twice")
        self[entry.name] = entry
        return entry

    def lookup(self, name: str, key: str, config_file: str = "config", among: Iterable[str] | None = None,
               qualifier: str = ""):
        """The entry ``name`` at config key ``key`` (``among``: the names allowed there, default every one);
        one line naming the key, the value and the allowed names otherwise."""
        names = list(self if among is None else among)
        if name not in names:
            raise KinjectError(config_file, f"{key}: {name!r} is not a {self.kind}{qualifier} "
                               f"(registered: {', '.join(names)})")
        return self[name]
