"""What every command group shares: the consoles, the common options, the exit code carrier
and loading the governed tools named on the command line."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from agentfence.errors import ConfigurationError

# Wide enough for the decision tables when output goes to a file or a CI log.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ToolsOption = Annotated[
    str | None,
    typer.Option(
        "--tools",
        help="The governed tools, as module:attribute (a list of tools or a "
        "function returning one), e.g. agentfence.demo.tools:TOOLS.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


class Exit(Exception):
    """A CLI outcome with an exit code (1: checks failed; 2: could not run)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def load_tools(spec: str | None) -> list[Any]:
    """Import ``module:attribute`` and return the tools it names."""
    if not spec:
        raise ConfigurationError(
            "no tools given: pass --tools module:attribute naming your list of tools, e.g. "
            "--tools agentfence.demo.tools:TOOLS"
        )
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"--tools {spec!r} must look like module:attribute")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"--tools {spec!r}: cannot import {module_name!r}: {exc}") from exc
    finally:
        sys.path.pop(0)
    try:
        value = getattr(module, attr)
    except AttributeError as exc:
        raise ConfigurationError(f"--tools {spec!r}: {module_name} has no {attr!r}") from exc
    tools = value() if callable(value) and not hasattr(value, "name") else value
    if not isinstance(tools, Iterable):
        raise ConfigurationError(f"--tools {spec!r} is not a list of tools")
    return list(tools)
