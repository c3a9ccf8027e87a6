"""Cedar types derived from a tool's JSON Schema, and argument values converted to them.

The schema :mod:`agentfence._schema` generates names these types; the fence converts each
bound argument to its Cedar value here (longs in range, decimals of at most four places,
sets sorted so a stored request is the same in every process).
"""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from agentfence.errors import ArgumentError

_LONG_MIN = -(2**63)
_LONG_MAX = 2**63 - 1
# Cedar's decimal extension type is a 64-bit integer scaled by 10^4.
_DECIMAL_PLACES = decimal.Decimal("0.0001")
_DECIMAL_MAX = decimal.Decimal(_LONG_MAX) / 10000
_DECIMAL_MIN = decimal.Decimal(_LONG_MIN) / 10000
# --- -------------------------------------------------


@dataclass(frozen=True)
class Prim:
    name: str  # "String", "Long", "Bool" or "decimal"


@dataclass(frozen=True)
class SetOf:
    item: CedarType


@dataclass(frozen=True)
class Field:
    name: str
    type: CedarType
    required: bool


@dataclass(frozen=True)
class Record:
    fields: tuple[Field, ...]


CedarType = Prim | SetOf | Record
STRING = Prim("String")
LONG = Prim("Long")
BOOL = Prim("Bool")
DECIMAL = Prim("decimal")


def type_of(
    schema: Mapping[str, Any], defs: Mapping[str, Any], seen: frozenset[str]
) -> tuple[CedarType | None, bool]:
    """The Cedar type of a JSON Schema node and whether it admits null.

    ``None`` means the value has no Cedar type (free-form objects, unions of different
    types, tuples, recursion): such arguments are not visible to policies.
    """
    if "$ref" in schema:
        ref = str(schema["$ref"]).rsplit("/", 1)[-1]
        if ref in seen or ref not in defs:
            return None, False
        return type_of(defs[ref], defs, seen | {ref})
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"]
            nullable = len(options) != len(schema[key])
            # pydantic describes Decimal as a number or a numeric string.
            if sorted(str(o.get("type")) for o in options) == ["number", "string"]:
                return DECIMAL, nullable
            if len(options) == 1:
                inner, inner_null = type_of(options[0], defs, seen)
                return inner, nullable or inner_null
            return None, nullable
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return type_of(schema["allOf"][0], defs, seen)
    kind = schema.get("type")
    if isinstance(kind, list):
        options = [k for k in kind if k != "null"]
        if len(options) != 1:
            return None, "null" in kind
        inner, _ = type_of({**schema, "type": options[0]}, defs, seen)
        return inner, "null" in kind
    if kind is None and ("enum" in schema or "const" in schema):
        values = schema.get("enum", [schema.get("const")])
        if all(isinstance(v, str) for v in values):
            return STRING, False
        return None, False
    if kind == "string":
        # Binary values have no faithful Cedar string form: not visible to policies.
        if schema.get("format") == "binary":
            return None, False
        return STRING, False
    if kind == "integer":
        return LONG, False
    if kind == "boolean":
        return BOOL, False
    if kind == "number":
        return DECIMAL, False
    if kind == "array":
        items = schema.get("items")
        if not isinstance(items, Mapping) or "prefixItems" in schema:
            return None, False
        item, _ = type_of(items, defs, seen)
        return (SetOf(item) if item is not None else None), False
    if kind == "object" or "properties" in schema:
        return record_of(schema, defs, seen), False
    return None, False


def record_of(
    schema: Mapping[str, Any], defs: Mapping[str, Any], seen: frozenset[str]
) -> Record | None:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        return None
    required = set(schema.get("required", ()))
    fields: list[Field] = []
    for name, sub in properties.items():
        ctype, nullable = type_of(sub, defs, seen)
        if ctype is None:
            continue
        has_default = sub.get("default") is not None
        fields.append(Field(name, ctype, (name in required or has_default) and not nullable))
    return Record(tuple(fields))


def render_type(ctype: CedarType, indent: str = "") -> str:
    """Cedar schema syntax for a type (record attribute names are always quoted)."""
    if isinstance(ctype, Prim):
        return ctype.name
    if isinstance(ctype, SetOf):
        return f"Set<{render_type(ctype.item, indent)}>"
    if not ctype.fields:
        return "{}"
    inner = indent + "  "
    lines = [
        f'{inner}"{f.name}"{"" if f.required else "?"}: {render_type(f.type, inner)}'
        for f in ctype.fields
    ]
    return "{\n" + ",\n".join(lines) + f"\n{indent}}}"


def to_cedar(value: Any, ctype: CedarType, path: str) -> Any:
    """Convert a Python value to the Cedar JSON value of ``ctype`` or raise ArgumentError."""
    if isinstance(ctype, Prim):
        return _prim_to_cedar(value, ctype, path)
    if isinstance(ctype, SetOf):
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple | set | frozenset):
            raise ArgumentError(path, f"expected a list, got {type(value).__name__}")
        items = [to_cedar(item, ctype.item, f"{path}[{i}]") for i, item in enumerate(value)]
        # A Cedar set has no order; sort so the stored request is the same in every process.
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if not isinstance(value, Mapping):
        raise ArgumentError(path, f"expected an object, got {type(value).__name__}")
    return record_to_cedar(value, ctype, path)


def record_to_cedar(value: Mapping[str, Any], record: Record, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in record.fields:
        sub = f"{path}.{f.name}" if path else f.name
        item = value.get(f.name)
        if item is None:
            if f.required:
                raise ArgumentError(sub, "is required but missing")
            continue
        out[f.name] = to_cedar(item, f.type, sub)
    return out


def _prim_to_cedar(value: Any, ctype: Prim, path: str) -> Any:
    if ctype is STRING or ctype.name == "String":
        if isinstance(value, enum.Enum):
            value = value.value
        if isinstance(value, datetime.date | datetime.time):
            return value.isoformat()
        if isinstance(value, uuid.UUID):
            return str(value)
        if not isinstance(value, str):
            raise ArgumentError(path, f"expected a string, got {type(value).__name__}")
        return value
    if ctype.name == "Bool":
        if not isinstance(value, bool):
            raise ArgumentError(path, f"expected true or false, got {type(value).__name__}")
        return value
    if ctype.name == "Long":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ArgumentError(path, f"expected an integer, got {type(value).__name__}")
        if not _LONG_MIN <= value <= _LONG_MAX:
            raise ArgumentError(
                path, f"integer {value} is outside the 64-bit range policies can compare"
            )
        return value
    return _decimal_to_cedar(value, path)


def _decimal_to_cedar(value: Any, path: str) -> dict[str, Any]:
    if isinstance(value, bool) or not isinstance(value, int | float | decimal.Decimal):
        raise ArgumentError(path, f"expected a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ArgumentError(path, f"{value!r} is not a finite number")
    try:
        exact = decimal.Decimal(repr(value) if isinstance(value, float) else value)
        if not exact.is_finite():
            raise ArgumentError(path, f"{value!r} is not a finite number")
        rounded = exact.quantize(_DECIMAL_PLACES, rounding=decimal.ROUND_HALF_EVEN)
    except decimal.InvalidOperation as exc:
        raise ArgumentError(path, f"{value!r} is too large for a Cedar decimal") from exc
    if not _DECIMAL_MIN <= rounded <= _DECIMAL_MAX:
        raise ArgumentError(path, f"{value!r} is outside the range of a Cedar decimal")
    if rounded != exact:
        # Rounding would decide on another number than the tool receives: 100.00004 would
        # pass a `<= 100` rule and the tool would be paid 100.00004. Refuse instead.
        raise ArgumentError(
            path,
            f"{value!r} has more than 4 decimal places, which policies cannot compare exactly "
            "(Cedar decimals hold 4); send the amount with at most 4 decimal places",
        )
    return decimal_json(rounded)


def decimal_json(value: decimal.Decimal) -> dict[str, Any]:
    """The Cedar JSON of a decimal (in range, with at most four places)."""
    return {"__extn": {"fn": "decimal", "arg": f"{value:f}"}}


def clamped_decimal(value: decimal.Decimal) -> dict[str, Any]:
    """The Cedar JSON of a computed total: rounded to four places, clamped to the range."""
    clamped = max(_DECIMAL_MIN, min(_DECIMAL_MAX, value))
    return decimal_json(clamped.quantize(_DECIMAL_PLACES, rounding=decimal.ROUND_HALF_EVEN))
