"""``agentfence policy``: validate, test and inspect Cedar policies."""

from __future__ import annotations

import json
import sys
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agentfence._policy_files import check_syntax
from agentfence._schema import generate_schema
from agentfence.cli._common import Exit, JsonOption, ToolsOption, err, load_tools, out
from agentfence.config import Settings
from agentfence.errors import AgentfenceWarning, ConfigurationError
from agentfence.policy import Effect, PolicyEngine
from agentfence.tools import ToolCatalog

__all__ = ["register"]

policy_app = typer.Typer(help="Validate, test and inspect Cedar policies.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``policy`` commands to the main app."""
    app.add_typer(policy_app, name="policy")


@policy_app.command("validate")
def policy_validate(
    directory: Annotated[
        Path | None,
        typer.Argument(help="Policy directory (default: $AGENTFENCE_POLICY_DIR or ./policies)."),
    ] = None,
    tools: ToolsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Parse and validate every policy against the schema; list each problem with file:line."""
    directory = directory or Path(Settings.from_env().policy_dir)
    if not tools:
        count = check_syntax(directory)
        note = (
            "parsed only: pass --tools module:attribute to validate attributes against "
            "the schema generated from your tools"
        )
        if as_json:
            out.print_json(
                json.dumps(
                    {"valid": True, "policies": count, "parsed_only": True, "warnings": [note]}
                )
            )
        else:
            err.print(f"warning: {note}")
            out.print(f"{directory}: {count} policies parse")
        return
    catalog = ToolCatalog.from_tools(load_tools(tools))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AgentfenceWarning)
        engine = PolicyEngine.load(directory, catalog)
    notes = [str(w.message) for w in caught if issubclass(w.category, AgentfenceWarning)]
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "valid": True,
                    "policy_hash": engine.policy_hash,
                    "policies": len(engine.policies),
                    "files": engine.files,
                    "warnings": notes,
                    "parsed_only": False,
                }
            )
        )
        return
    for note in notes:
        err.print(f"warning: {note}")
    out.print(
        f"{directory}: {len(engine.policies)} policies are valid against the schema "
        f"(policy set {engine.policy_hash[:16]})"
    )


@policy_app.command("schema")
def policy_schema(
    tools: ToolsOption = None,
    policies: Annotated[
        Path | None, typer.Option(help="Include this directory's *.cedarschema files.")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print Cedar's JSON schema format instead of the schema syntax."
        ),
    ] = False,
) -> None:
    """Print the Cedar schema generated from the tools (plus the directory's schema files).

    With --policies, only the context attributes the policies name are declared, as the fence
    declares them. --json prints the same schema in Cedar's JSON schema format; schema files
    are text, so --json with a directory that has *.cedarschema files is refused.
    """
    catalog = ToolCatalog.from_tools(load_tools(tools))
    engine = PolicyEngine.load(policies, catalog) if policies is not None else None
    if not as_json:
        text = engine.schema_text if engine is not None else generate_schema(catalog)
        out.print(text, markup=False, end="")
        return
    from agentfence._schema_json import generate_schema_json

    if engine is None:
        sys.stdout.write(json.dumps(generate_schema_json(catalog), indent=2) + "\n")
        return
    schema_files = sorted(name for name in engine.files if name.endswith(".cedarschema"))
    if schema_files:
        raise ConfigurationError(
            f"{policies} has schema files ({', '.join(schema_files)}) in the Cedar schema "
            "syntax, which --json does not convert; run `agentfence policy schema` without "
            "--json, or declare those types in the JSON yourself"
        )
    schema = generate_schema_json(catalog, engine.principal_types, engine.flow)
    sys.stdout.write(json.dumps(schema, indent=2) + "\n")


@dataclass(frozen=True)
class _Case:
    name: str
    tool: str
    args: dict[str, Any]
    principal: str
    expect: Effect
    expect_policies: tuple[str, ...] | None
    agent: str | None
    messages: tuple[Any, ...] = ()


def _case_messages(raw: Any, where: str) -> tuple[Any, ...]:
    """The thread before a case's call: ``[[case.messages]]`` with role, content, tool, labels."""
    from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage

    from agentfence.labels import METADATA_KEY, labelled

    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigurationError(f"{where}: 'messages' must be a list of tables")
    messages: list[Any] = []
    for number, item in enumerate(raw, start=1):
        at = f"{where}, message {number}"
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise ConfigurationError(f"{at}: needs role and content (a string)")
        role, content = item.get("role"), item["content"]
        labels = item.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ConfigurationError(f"{at}: labels must be a list of strings")
        if role == "user":
            message: Any = HumanMessage(content)
            if labels:
                labelled(message, labels)
        elif role == "system":
            message = SystemMessage(content)
        elif role == "tool":
            if not isinstance(item.get("tool"), str):
                raise ConfigurationError(f'{at}: a tool message needs tool = "<tool name>"')
            message = ToolMessage(
                content,
                name=item["tool"],
                tool_call_id=f"case-message-{number}",
                response_metadata={METADATA_KEY: {"labels": sorted(set(labels))}},
            )
        else:
            raise ConfigurationError(f"{at}: role = {role!r}; use user, system or tool")
        messages.append(message)
    return tuple(messages)


_FILE_KEYS = frozenset({"case", "policies", "tools"})
_CASE_KEYS = frozenset(
    {"name", "tool", "args", "principal", "expect", "policies", "agent", "messages"}
)


def _read_cases(path: Path) -> tuple[dict[str, Any], list[_Case]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"cases file {str(path)!r} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from exc
    problems = [
        f"{path}: unknown key {key!r} at the top; use {', '.join(sorted(_FILE_KEYS))}"
        for key in data
        if key not in _FILE_KEYS
    ]
    cases: list[_Case] = []
    raw_cases = data.get("case", [])
    if not isinstance(raw_cases, list):
        raw_cases = []
        problems.append(f"{path}: 'case' must be [[case]] tables")
    for index, raw in enumerate(raw_cases, start=1):
        if not isinstance(raw, dict):
            problems.append(f"{path}: case {index} is not a table; write each as [[case]]")
            continue
        where = f"{path}: case {index} ({raw.get('name', 'unnamed')!r})"
        unknown = sorted(set(raw) - _CASE_KEYS)
        if unknown:
            # A misspelt key (expected_policies for policies) would silently check nothing.
            problems.append(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; a case takes "
                f"{', '.join(sorted(_CASE_KEYS))}"
            )
        missing = [k for k in ("tool", "principal", "expect") if k not in raw]
        if missing:
            problems.append(f"{where} lacks {', '.join(missing)}")
            continue
        expect = str(raw["expect"]).upper()
        if expect not in Effect.__members__:
            problems.append(
                f"{where}: expect = {raw['expect']!r}; use allow, deny or require_approval"
            )
            continue
        expected_policies = raw.get("policies")
        if not isinstance(raw.get("args", {}), dict):
            problems.append(f"{where}: args must be a table, e.g. args = {{ amount = 40.0 }}")
            continue
        if expected_policies is not None and not (
            isinstance(expected_policies, list)
            and all(isinstance(p, str) for p in expected_policies)
        ):
            problems.append(f"{where}: policies must be a list of policy ids")
            continue
        try:
            messages = _case_messages(raw.get("messages"), where)
        except ConfigurationError as exc:
            problems.append(str(exc))
            continue
        cases.append(
            _Case(
                name=str(raw.get("name", f"case {index}")),
                tool=str(raw["tool"]),
                args=dict(raw.get("args", {})),
                principal=str(raw["principal"]),
                expect=Effect[expect],
                expect_policies=tuple(expected_policies) if expected_policies is not None else None,
                agent=raw.get("agent"),
                messages=messages,
            )
        )
    if problems:
        raise ConfigurationError(
            f"{path} has {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems)
        )
    if not cases:
        raise ConfigurationError(f"{path} has no [[case]] tables; see docs/policy-guide.md")
    return data, cases


@policy_app.command("test")
def policy_test(
    cases_file: Annotated[Path, typer.Argument(help="A TOML file of \\[\\[case]] tables.")],
    policies: Annotated[
        Path | None, typer.Option(help="Policy directory (default: the file's 'policies' key).")
    ] = None,
    tools: ToolsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Decide each case and compare with its expected outcome; exit 1 on any mismatch."""
    data, cases = _read_cases(cases_file)
    base = cases_file.parent
    directory = policies or (base / data["policies"] if "policies" in data else None)
    if directory is None:
        raise ConfigurationError(
            f"no policy directory: pass --policies or set 'policies' in {cases_file}"
        )
    from agentfence.fence import Fence  # LangGraph loads only for the commands that need it

    fence = Fence.from_directory(directory, tools=load_tools(tools or data.get("tools")))
    results = []
    for case in cases:
        decision = fence.decide(
            case.tool,
            case.args,
            principal=case.principal,
            agent=case.agent,
            thread=f"policy-test:{case.name}",
            messages=case.messages,
        )
        problems = []
        if decision.effect is not case.expect:
            problems.append(f"expected {case.expect.value}, got {decision.effect.value}")
        if case.expect_policies is not None and set(case.expect_policies) != set(
            decision.policy_ids
        ):
            problems.append(
                f"expected policies {sorted(case.expect_policies)}, got "
                f"{sorted(decision.policy_ids)}"
            )
        results.append((case, decision, problems))
    failed = [r for r in results if r[2]]
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "passed": len(results) - len(failed),
                    "failed": len(failed),
                    "cases": [
                        {
                            "name": c.name,
                            "expected": c.expect.value,
                            "got": d.effect.value,
                            "policies": list(d.policy_ids),
                            "reasons": list(d.reasons),
                            "problems": p,
                        }
                        for c, d, p in results
                    ],
                }
            )
        )
    else:
        table = Table(title=f"policy test: {cases_file}")
        for column in ("case", "expected", "got", "policies", ""):
            table.add_column(column)
        for case, decision, problems in results:
            table.add_row(
                case.name,
                case.expect.value,
                decision.effect.value,
                ", ".join(decision.policy_ids) or "-",
                "[red]FAIL[/]" if problems else "[green]ok[/]",
            )
        out.print(table)
        for case, decision, problems in failed:
            out.print(f"[red]FAIL[/] {case.name}: " + "; ".join(problems), markup=True)
            out.print(f"     reasons: {'; '.join(decision.reasons)}", markup=False)
        out.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise Exit(1)
