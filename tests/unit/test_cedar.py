"""Splitting Cedar text into statements with true line numbers."""

from __future__ import annotations

from agentfence._cedar import parse_policy_file, split_statements


def test_statements_keep_their_start_lines() -> None:
    text = (
        "// header; with a semicolon in a comment\n"
        "\n"
        'permit (principal, action, resource) when { context.s == "a;b" };\n'
        "\n"
        "// next\n"
        '@id("x")\n'
        "forbid (principal, action, resource);\n"
    )
    statements = split_statements(text, "p.cedar")
    assert [(s.start_line, s.end_line) for s in statements] == [(3, 3), (6, 7)]


def test_unterminated_tail_is_its_own_statement() -> None:
    statements = split_statements("permit (principal, action, resource);\nforbid (", "p.cedar")
    assert [s.start_line for s in statements] == [1, 2]


def test_policy_ids_come_from_id_annotation_or_location() -> None:
    policies, problems = parse_policy_file(
        '@id("named") permit (principal, action, resource);\n'
        "\n"
        "forbid (principal, action, resource);\n",
        "dir/p.cedar",
    )
    assert problems == []
    assert [p.policy_id for p in policies] == ["named", "dir/p.cedar:3"]


def test_parse_error_points_at_the_failing_policy() -> None:
    _, problems = parse_policy_file(
        "permit (principal, action, resource);\n\n\nforbid (principal, action resource);\n",
        "p.cedar",
    )
    assert len(problems) == 1
    assert problems[0].startswith("p.cedar:4: ")
    assert "lines 4-4" in problems[0]


def test_templates_are_refused_with_a_reason() -> None:
    _, problems = parse_policy_file(
        "permit (principal == ?principal, action, resource);", "t.cedar"
    )
    assert problems and "templates" in problems[0] and problems[0].startswith("t.cedar:1:")
