"""Names a package exports but imports on first use (PEP 562).

``agentfence`` and ``agentfence.verify`` list their public names with the module each lives
in; a name is imported when it is first read, so importing the package (or one of its
private modules, as a verifying worker process does) loads only what is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any


def lazy_exports(
    package: str,
    exports: Mapping[str, str],
    namespace: MutableMapping[str, Any],
    public: Iterable[str],
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: a name of ``exports`` is imported
    from its module when first read and kept in ``namespace`` (the package's globals)."""
    listed = frozenset(public)

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *listed})

    return getattr_, dir_
