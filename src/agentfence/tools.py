"""What the fence knows about each tool: its action groups, its resource, its argument types.

A developer attaches governance metadata to a LangChain tool with :func:`govern`; the fence
reads it into a :class:`ToolSpec`. From each tool's argument schema the fence derives the Cedar
type of ``context.args`` (see ``docs/policy-guide.md``, "Type mapping") and converts every
call's arguments to Cedar values, refusing values that do not fit.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError, create_model

from agentfence._cedar_types import (
    Prim,
    Record,
    SetOf,
    record_of,
    record_to_cedar,
)
from agentfence._mcp_tools import SchemaCheck, is_mcp_tool, mcp_groups
from agentfence.errors import ArgumentError, ToolSpecError
from agentfence.labels import Meter, check_label

__all__ = ["ArgumentError", "BoundArgs", "Resource", "ToolCatalog", "ToolSpec", "govern"]

METADATA_KEY = "agentfence"
"""The key under ``BaseTool.metadata`` where :func:`govern` stores a tool's spec."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_RESOURCES = 100
"""The most resources one call may name (a list-valued resource argument is decided per item)."""


class _ToolLike(Protocol):
    name: str
    metadata: dict[str, Any] | None


ToolT = TypeVar("ToolT", bound=_ToolLike)


@dataclass(frozen=True)
class Resource:
    """Which argument names the resource a call touches.

    ``Resource("Customer", arg="customer_id")`` makes a call with
    ``{"customer_id": "c-42"}`` act on ``Customer::"c-42"``. ``arg`` may be a dotted path
    into nested arguments (``"invoice.account"``).
    """

    type: str
    arg: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.type):
            raise ToolSpecError(
                f"resource type {self.type!r} is not a Cedar entity type name; use letters, "
                "digits and '_' (for example Resource('Customer', arg='customer_id'))"
            )
        if not self.arg or any(not part for part in self.arg.split(".")):
            raise ToolSpecError(
                f"resource argument path {self.arg!r} is empty or malformed; name an argument, "
                "for example arg='customer_id' or arg='invoice.account'"
            )


_SPEC_KEYS = ("groups", "resource", "labels", "redact", "redact_fields", "meter")
_FIELD = re.compile(r"^[^\s]{1,128}$")


@dataclass(frozen=True)
class ToolSpec:
    """Governance metadata for one tool.

    ``groups`` are the Cedar action groups the tool's action belongs to (``external_send``,
    ``read``), so policies can speak of kinds of action. ``resource`` maps an argument to the
    Cedar resource; without it the resource is ``Tool::"<tool name>"``. ``labels`` are the
    data labels of what the tool returns (``pii``, ``secret``, ``untrusted`` …); ``redact``
    names the kinds of text to mask in its results and ``redact_fields`` the fields of a
    JSON result to mask whole; ``meter`` names the argument whose amounts add up into
    ``context.usage`` totals (``docs/policy-guide.md``).
    """

    groups: tuple[str, ...] = ()
    resource: Resource | None = None
    labels: tuple[str, ...] = ()
    redact: tuple[str, ...] = ()
    redact_fields: tuple[str, ...] = ()
    meter: Meter | None = None

    @classmethod
    def of(cls, tool: _ToolLike) -> ToolSpec:
        """Read the spec :func:`govern` attached to a tool (an empty spec when none)."""
        raw = (tool.metadata or {}).get(METADATA_KEY)
        if raw is None:
            return cls()
        if isinstance(raw, ToolSpec):
            return raw
        if not isinstance(raw, Mapping):
            raise ToolSpecError(
                f"tool {tool.name!r}: metadata[{METADATA_KEY!r}] must be a mapping with "
                f"'groups' and 'resource', got {type(raw).__name__}; use agentfence.govern()"
            )
        unknown = set(raw) - set(_SPEC_KEYS)
        if unknown:
            raise ToolSpecError(
                f"tool {tool.name!r}: unknown key(s) {sorted(unknown)} in "
                f"metadata[{METADATA_KEY!r}]; the keys are "
                + ", ".join(f"'{k}'" for k in _SPEC_KEYS)
            )
        groups = raw.get("groups", ())
        if isinstance(groups, str) or not all(isinstance(g, str) for g in groups):
            raise ToolSpecError(
                f"tool {tool.name!r}: 'groups' must be a list of action group names, got {groups!r}"
            )
        resource = raw.get("resource")
        if isinstance(resource, Mapping):
            resource = Resource(
                type=str(resource.get("type", "")), arg=str(resource.get("arg", ""))
            )
        elif resource is not None and not isinstance(resource, Resource):
            raise ToolSpecError(
                f"tool {tool.name!r}: 'resource' must be Resource(type, arg=...) or "
                f"{{'type': ..., 'arg': ...}}, got {resource!r}"
            )
        for group in groups:
            if not _NAME.match(group):
                raise ToolSpecError(
                    f"tool {tool.name!r}: action group {group!r} is not a valid name; use "
                    "letters, digits and '_'"
                )
        where = f"tool {tool.name!r}"
        labels = tuple(check_label(x, where) for x in _strings(raw, "labels", where))
        redact = _strings(raw, "redact", where)
        for kind in redact:
            if not re.match(r"^[a-z][a-z0-9_]*$", kind):
                raise ToolSpecError(
                    f"{where}: redaction kind {kind!r} is not valid; use lower-case names such "
                    "as 'iban', 'card', 'email', 'phone', 'ssn' or 'secret'"
                )
        fields = _strings(raw, "redact_fields", where)
        for name in fields:
            if not _FIELD.match(name):
                raise ToolSpecError(f"{where}: redact_fields entry {name!r} is not a field name")
        meter = raw.get("meter")
        if isinstance(meter, Mapping):
            meter = Meter(name=str(meter.get("name", "")), arg=str(meter.get("arg", "")))
        elif meter is not None and not isinstance(meter, Meter):
            raise ToolSpecError(
                f"{where}: 'meter' must be Meter(name, arg=...) or {{'name': ..., 'arg': ...}}, "
                f"got {meter!r}"
            )
        return cls(
            groups=tuple(groups),
            resource=resource,
            labels=tuple(dict.fromkeys(labels)),
            redact=tuple(dict.fromkeys(redact)),
            redact_fields=tuple(dict.fromkeys(f.lower() for f in fields)),
            meter=meter,
        )


def _strings(raw: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = raw.get(key, ())
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ToolSpecError(f"{where}: {key!r} must be a list of strings, got {value!r}")
    return tuple(value)


def govern(
    tool: ToolT,
    *,
    groups: Iterable[str] = (),
    resource: Resource | None = None,
    labels: Iterable[str] = (),
    redact: Iterable[str] = (),
    redact_fields: Iterable[str] = (),
    meter: Meter | None = None,
) -> ToolT:
    """Attach governance metadata to a LangChain tool and return the same tool.

    ::

        send_email = govern(send_email, groups=["external_send"],
                            resource=Resource("Recipient", arg="to"))
        read_inbox = govern(read_inbox, groups=["read"], labels=["untrusted", "pii"],
                            redact=["card"])
        transfer = govern(transfer, groups=["payments"], resource=Resource("Account",
                          arg="iban"), meter=Meter("payments", arg="amount"))
    """
    for key, value in (
        ("groups", groups),
        ("labels", labels),
        ("redact", redact),
        ("redact_fields", redact_fields),
    ):
        if isinstance(value, str):
            raise ToolSpecError(
                f"tool {tool.name!r}: {key!r} must be a list of strings, got {value!r}; "
                f"write {key}=[{value!r}]"
            )
    spec = ToolSpec(
        groups=tuple(groups),
        resource=resource,
        labels=tuple(labels),
        redact=tuple(redact),
        redact_fields=tuple(redact_fields),
        meter=meter,
    )
    ToolSpec.of(_Probe(tool.name, {METADATA_KEY: _as_metadata(spec)}))  # validates
    metadata = dict(tool.metadata or {})
    metadata[METADATA_KEY] = _as_metadata(spec)
    tool.metadata = metadata
    return tool


@dataclass
class _Probe:
    name: str
    metadata: dict[str, Any] | None


def _as_metadata(spec: ToolSpec) -> dict[str, Any]:
    resource = {"type": spec.resource.type, "arg": spec.resource.arg} if spec.resource else None
    data: dict[str, Any] = {"groups": list(spec.groups), "resource": resource}
    # The keys added with data labels appear only when used, so older metadata reads the same.
    if spec.labels:
        data["labels"] = list(spec.labels)
    if spec.redact:
        data["redact"] = list(spec.redact)
    if spec.redact_fields:
        data["redact_fields"] = list(spec.redact_fields)
    if spec.meter is not None:
        data["meter"] = {"name": spec.meter.name, "arg": spec.meter.arg}
    return data


# --- The catalog of governed tools ------------------------------------------------------------


@dataclass(frozen=True)
class BoundArgs:
    """A call's arguments validated once with the tool's own schema: what is decided and run.

    ``values`` are the validated values as JSON (defaults filled in, aliases resolved), keyed
    by the names of the tool's JSON schema, the names the model calls the tool with and
    policies read in ``context.args``. ``given`` are the names the call itself supplied (the
    rest came from the tool's defaults). ``cedar`` is the Cedar record ``context.args``.
    """

    values: Mapping[str, Any]
    given: frozenset[str]
    cedar: Mapping[str, Any]


@dataclass(frozen=True)
class _InputKeys:
    """The keys one argument model takes: each field's accepted spellings and nested models."""

    fields: Mapping[str, tuple[str, ...]]  # schema name -> the input keys that fill it
    nested: Mapping[str, _InputKeys]  # schema name -> keys of a nested model (or list of them)
    open: bool  # extra="allow": unknown keys are kept, not dropped
    # Worked out once from the three above: every input key they accept, and the spelling of
    # each field when every field has exactly one (``None`` otherwise).
    spellings: frozenset[str] = field(init=False, repr=False, compare=False)
    single: tuple[tuple[str, str], ...] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        spelled = self.fields.values()
        object.__setattr__(self, "spellings", frozenset(k for keys in spelled for k in keys))
        single = all(len(keys) == 1 for keys in spelled)
        object.__setattr__(
            self,
            "single",
            tuple((name, keys[0]) for name, keys in self.fields.items()) if single else None,
        )


@dataclass(frozen=True)
class ToolEntry:
    """One tool as the fence sees it: name, spec, argument model and Cedar argument type."""

    name: str
    spec: ToolSpec
    args_type: Record
    model: type[BaseModel] | None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    input_keys: _InputKeys | None = None
    renames: Mapping[str, str] = field(default_factory=dict)
    """Field names the schema spells otherwise (``to`` -> ``recipient``, from an alias)."""
    schema_check: SchemaCheck | None = None
    """For a tool described by a JSON Schema alone (an MCP tool): the schema's validator."""

    def bind(self, args: Any) -> BoundArgs:
        """Validate a call's raw arguments once, as the tool itself will validate them.

        Raises :class:`ArgumentError` naming the argument that does not fit, and for a raw
        call that is ambiguous: an argument given twice (by its name and its alias), or keys
        the tool's schema would silently drop (the model may have meant them, the fence
        cannot see them, the tool would never get them).
        """
        if not isinstance(args, Mapping):
            raise ArgumentError("", f"arguments must be an object, got {type(args).__name__}")
        if self.input_keys is not None and self.schema_check is None:
            _check_keys(args, self.input_keys, "")
        if self.model is None:
            return self._bind_schema(args)
        try:
            validated = self.model.model_validate(args if type(args) is dict else dict(args))
            # The same validated values, twice: Python values convert to Cedar (NaN and
            # infinities are refused there), JSON values are what is recorded and approved.
            native = self._renamed(validated.model_dump())
            values = self._renamed(validated.model_dump(mode="json"))
        except ValidationError as exc:
            raise _argument_error(exc) from None
        except (RecursionError, ValueError, TypeError) as exc:
            raise ArgumentError("", f"arguments could not be validated: {exc}") from None
        keys = self.input_keys
        if keys is None:
            given = frozenset(args)
        elif keys.single is not None:
            given = frozenset([n for n, k in keys.single if k in args])
        else:
            given = frozenset(
                n for n, spelled in keys.fields.items() if any(k in args for k in spelled)
            )
        return BoundArgs(values, given, record_to_cedar(native, self.args_type, ""))

    def _bind_schema(self, args: Mapping[str, Any]) -> BoundArgs:
        """Arguments of a tool described by a JSON schema only (no model validates them).

        The tool gets them as sent, so they are validated here against the schema, closed
        to keys it does not declare (``agentfence._mcp_tools``).
        """
        if self.schema_check is not None:
            self.schema_check.check(args)
        try:
            values = json.loads(json.dumps({**self.defaults, **args}, allow_nan=False))
        except (TypeError, ValueError, RecursionError) as exc:
            raise ArgumentError("", f"arguments are not JSON values: {exc}") from None
        cedar = record_to_cedar(values, self.args_type, "")
        return BoundArgs(values, frozenset(args), cedar)

    def _renamed(self, dumped: dict[str, Any]) -> dict[str, Any]:
        if not self.renames:
            return dumped
        return {self.renames.get(k, k): v for k, v in dumped.items()}

    def cedar_args(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Validate the arguments and convert them to the Cedar record ``context.args``.

        Raises :class:`ArgumentError` naming the first argument that does not fit.
        """
        return dict(self.bind(args).cedar)

    def resource_id(self, args: Mapping[str, Any]) -> str:
        """The id of the resource the call touches (the tool name when none is declared).

        Raises :class:`ArgumentError` when the argument is missing or not one string or
        integer (a list names several resources: :meth:`resource_targets`).
        """
        targets = self.resource_targets(args)
        if len(targets) != 1:
            raise ArgumentError(
                self.spec.resource.arg if self.spec.resource else "",
                "names several resources; decide it with resource_targets()",
            )
        return targets[0][0]

    def resource_targets(self, args: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """Each resource the call touches: its id and the argument value that names it.

        A resource argument holding a list (``recipients=[...]``) names one resource per item,
        each decided on its own; without a declared resource it is the tool itself.
        """
        if self.spec.resource is None:
            return [(self.name, None)]
        where, kind = self.spec.resource.arg, self.spec.resource.type
        value: Any = args
        for part in self._resource_path():
            if not isinstance(value, Mapping) or part not in value:
                raise ArgumentError(where, f"names the {kind} resource but is missing")
            value = value[part]
        items = list(value) if isinstance(value, list | tuple) else [value]
        if not items:
            raise ArgumentError(where, f"names the {kind} resources but is empty")
        if len(items) > MAX_RESOURCES:
            raise ArgumentError(
                where,
                f"names {len(items)} {kind} resources; one call may name at most "
                f"{MAX_RESOURCES}: split it",
            )
        targets: list[tuple[str, Any]] = []
        for item in items:
            if isinstance(item, bool) or not isinstance(item, str | int):
                raise ArgumentError(
                    where,
                    f"names the {kind} resource and must be a string or integer (or a list "
                    f"of them), got {type(item).__name__}",
                )
            targets.append((str(item), item))
        return targets

    def _resource_path(self) -> list[str]:
        parts = self.spec.resource.arg.split(".") if self.spec.resource else []
        if parts:
            # Resource("Recipient", arg="to") on a field the schema calls "recipient".
            parts[0] = self.renames.get(parts[0], parts[0])
        return parts

    @property
    def resource_type(self) -> str:
        """The Cedar entity type of this tool's resource."""
        return self.spec.resource.type if self.spec.resource else "Tool"

    def provenance_fields(self) -> tuple[ProvenanceField, ...]:
        """The top-level arguments whose provenance policies see (``context.provenance``).

        Strings, numbers and sets of them: the values that can be copied from a message.
        """
        fields: list[ProvenanceField] = []
        for f in self.args_type.fields:
            ctype = f.type.item if isinstance(f.type, SetOf) else f.type
            if isinstance(ctype, Prim) and ctype.name in ("String", "Long", "decimal"):
                fields.append(ProvenanceField(f.name, f.required, ctype.name != "String"))
        return tuple(fields)


@dataclass(frozen=True)
class ProvenanceField:
    """An argument whose provenance is computed: its name, whether required, whether numeric."""

    name: str
    required: bool
    numeric: bool


def _check_keys(args: Mapping[str, Any], keys: _InputKeys, path: str) -> None:
    """Refuse raw arguments whose meaning depends on how the tool's schema reads them."""
    if (
        keys.single is not None
        and not keys.nested
        and (keys.open or keys.spellings.issuperset(args))
    ):
        # One spelling per field and nothing nested: no field can be given twice, and every
        # key is one the schema reads, so the checks below would find nothing.
        return
    taken: set[str] = set()
    for name, spelled in keys.fields.items():
        present = [k for k in spelled if k in args]
        taken.update(spelled)
        where = f"{path}.{name}" if path else name
        if len(present) > 1:
            # pydantic would pick one spelling and silently drop the other, so the fence and
            # the tool could each read a different value (alias smuggling).
            raise ArgumentError(
                where,
                "is given more than once, as "
                + " and ".join(repr(k) for k in present)
                + f"; the call is ambiguous: send it once, as {name!r}",
            )
        inner = keys.nested.get(name)
        if inner is not None and present:
            value = args[present[0]]
            items = value if isinstance(value, list | tuple) else [value]
            for i, item in enumerate(items):
                if isinstance(item, Mapping):
                    at = f"{where}[{i}]" if isinstance(value, list | tuple) else where
                    _check_keys(item, inner, at)
    unknown = sorted(str(k) for k in args if k not in taken)
    if unknown and not keys.open:
        listed = ", ".join(repr(k) for k in unknown)
        known = ", ".join(repr(n) for n in keys.fields) or "none"
        raise ArgumentError(
            path,
            f"unknown argument(s) {listed}: the tool's schema would drop them silently, so "
            f"the call is ambiguous; its arguments are {known}",
        )


def _input_keys(model: type[BaseModel], seen: frozenset[type[BaseModel]]) -> _InputKeys:
    """The input keys a pydantic model takes, as its validation reads them."""
    config = model.model_config
    by_name = bool(config.get("validate_by_name") or config.get("populate_by_name"))
    by_alias = config.get("validate_by_alias", True) is not False
    fields: dict[str, tuple[str, ...]] = {}
    nested: dict[str, _InputKeys] = {}
    for name, info in model.model_fields.items():
        aliases = _aliases(info.validation_alias) or ([info.alias] if info.alias else [])
        spelled = [*aliases] if by_alias else []
        if not aliases or by_name or not by_alias:
            spelled.append(name)
        key = _schema_key(name, info)
        fields[key] = tuple(dict.fromkeys(spelled))
        inner = _model_in(info.annotation)
        if inner is not None and inner not in seen:
            nested[key] = _input_keys(inner, seen | {inner})
    return _InputKeys(fields, nested, config.get("extra") == "allow")


def _aliases(alias: Any) -> list[str]:
    """The top-level keys of a validation alias (a name, AliasChoices or AliasPath)."""
    if alias is None:
        return []
    if isinstance(alias, str):
        return [alias]
    choices = getattr(alias, "choices", None)
    if choices is not None:
        return [k for c in choices for k in _aliases(c)]
    path = getattr(alias, "path", None)
    if path and isinstance(path[0], str):
        return [path[0]]
    return []


def _schema_key(name: str, info: Any) -> str:
    """The name a field has in the model's JSON schema (its validation alias, if any)."""
    aliases = _aliases(info.validation_alias)
    if aliases and isinstance(info.validation_alias, str):
        return aliases[0]
    return str(info.alias) if info.alias else name


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``M``, ``M | None``, ``list[M]``), if one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _argument_error(exc: ValidationError) -> ArgumentError:
    first = exc.errors(include_url=False)[0]
    path = ".".join(str(p) for p in first["loc"])
    extra = f" ({len(exc.errors())} problems in all)" if len(exc.errors()) > 1 else ""
    return ArgumentError(path, f"{first['msg']}{extra}")


class ToolCatalog:
    """The governed tools, keyed by name, with the Cedar schema text derived from them."""

    def __init__(self, entries: Sequence[ToolEntry]) -> None:
        self._entries = {e.name: e for e in entries}

    @classmethod
    def from_tools(cls, tools: Iterable[Any]) -> ToolCatalog:
        """Build the catalog from LangChain tools (anything with ``name`` and an args schema)."""
        entries: list[ToolEntry] = []
        seen: set[str] = set()
        for tool in tools:
            name = getattr(tool, "name", None)
            if not isinstance(name, str) or not name:
                raise ToolSpecError(f"{tool!r} has no name; pass LangChain tools (BaseTool)")
            if name in seen:
                raise ToolSpecError(f"two tools are named {name!r}; tool names must be unique")
            seen.add(name)
            entries.append(_entry_for(tool))
        return cls(entries)

    def get(self, name: str) -> ToolEntry | None:
        """The entry for a tool name, or ``None`` for a tool the fence was not given."""
        return self._entries.get(name)

    def __iter__(self) -> Any:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def entity_types(self) -> set[str]:
        """Entity types the tools' resources use."""
        return {"Tool"} | {e.resource_type for e in self._entries.values()}

    def groups(self) -> set[str]:
        """Every action group some tool declares."""
        return {g for e in self._entries.values() for g in e.spec.groups}


def _argument_model(tool: Any) -> Any:
    """The schema the tool itself validates its arguments with, less the injected ones.

    That is the tool's ``args_schema``, not LangChain's ``tool_call_schema``: the latter is a
    copy without the model's aliases and validators, so deciding on it would decide on
    another reading of the call than the tool's. Arguments LangGraph injects (state, store,
    runtime, the tool call id) are not the model's to send: they become optional and
    invisible to policy.
    """
    args_schema = getattr(tool, "args_schema", None)
    call_schema = getattr(tool, "tool_call_schema", None)
    if not (isinstance(args_schema, type) and issubclass(args_schema, BaseModel)):
        return call_schema or args_schema
    model_names = set(getattr(call_schema, "model_fields", None) or args_schema.model_fields)
    injected = [n for n in args_schema.model_fields if n not in model_names]
    if not injected:
        return args_schema
    optional: dict[str, Any] = {name: (Any, None) for name in injected}
    return create_model(f"{args_schema.__name__}ModelArgs", __base__=args_schema, **optional)


def _entry_for(tool: Any) -> ToolEntry:
    spec = ToolSpec.of(tool)
    if is_mcp_tool(tool):
        # An MCP tool's annotations are action groups policies can name, beside any the
        # developer declared with govern() (docs/mcp-guide.md).
        groups = (*spec.groups, *mcp_groups(getattr(tool, "metadata", None)))
        spec = dataclasses.replace(spec, groups=tuple(dict.fromkeys(groups)))
    schema_source = _argument_model(tool)
    model: type[BaseModel] | None = None
    json_schema: Mapping[str, Any]
    check: SchemaCheck | None = None
    if isinstance(schema_source, type) and issubclass(schema_source, BaseModel):
        model = schema_source
        json_schema = schema_source.model_json_schema()
    elif isinstance(schema_source, Mapping):
        check = SchemaCheck(tool.name, schema_source)
        json_schema = schema_source
    else:
        json_schema = {"type": "object", "properties": getattr(tool, "args", {}) or {}}
    defs = {**json_schema.get("$defs", {}), **json_schema.get("definitions", {})}
    record = record_of(json_schema, defs, frozenset()) or Record(())
    properties = json_schema.get("properties") or {}
    defaults = {
        k: v["default"] for k, v in properties.items() if isinstance(v, Mapping) and "default" in v
    }
    keys: _InputKeys | None
    renames: dict[str, str] = {}
    if model is not None:
        keys = _input_keys(model, frozenset({model}))
        renames = {
            n: _schema_key(n, i) for n, i in model.model_fields.items() if _schema_key(n, i) != n
        }
    elif properties:
        # A tool described by JSON Schema alone gets its arguments as sent: a key the
        # schema does not declare is invisible to policy unless the schema allows more.
        extra = json_schema.get("additionalProperties", False)
        keys = _InputKeys({k: (k,) for k in properties}, {}, extra is not False)
    else:
        keys = None
    return ToolEntry(
        name=tool.name,
        spec=spec,
        args_type=record,
        model=model,
        defaults=defaults,
        input_keys=keys,
        renames=renames,
        schema_check=check,
    )
