"""One error tree: every exception agentfence defines derives from AgentfenceError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import agentfence
from agentfence import AgentfenceError, ArgumentError, EntityError, EntityRef
from agentfence.errors import LogVerificationError, VerificationError

# Control flow inside the CLI, never raised to a caller (it carries an exit code); and the
# warnings' own root, a Warning, not an error.
_NOT_ERRORS = {"agentfence.cli._common.Exit", "agentfence.errors.AgentfenceWarning"}


def test_every_exception_class_is_under_the_root() -> None:
    outside = []
    for module_info in pkgutil.walk_packages(agentfence.__path__, "agentfence."):
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and f"{value.__module__}.{name}" not in _NOT_ERRORS
                and not issubclass(value, AgentfenceError)
            ):
                outside.append(f"{value.__module__}.{name}")
    assert outside == []


def test_a_malformed_entity_is_an_entity_error_that_says_what_to_pass() -> None:
    with pytest.raises(EntityError, match="an entity must have string 'type' and 'id'"):
        EntityRef.parse({"type": "User"}, "User")
    with pytest.raises(ValueError, match="an entity must be a non-empty string"):
        EntityRef.parse("", "User")  # still a ValueError for callers that catch one


def test_argument_and_verification_errors_are_public_and_rooted() -> None:
    error = ArgumentError("invoice.amount", "is required but missing")
    assert isinstance(error, AgentfenceError) and isinstance(error, ValueError)
    assert str(error) == "argument 'invoice.amount': is required but missing"
    assert error.path == "invoice.amount"
    assert issubclass(LogVerificationError, VerificationError)
    from agentfence.verify import LogVerificationError as ReExported

    assert ReExported is LogVerificationError
