"""Typed views of string arguments (``context.values``): what each value is, and its wiring."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import cedarpy
import pytest
from langchain_core.tools import tool

from agentfence import Fence, PolicyLoadError, Resource, govern
from agentfence._schema import ALL_FLOW, FlowParts, generate_schema
from agentfence._values import (
    ALL,
    Selection,
    ValueFacts,
    domain_name,
    email_address,
    facts_of,
    normalize_text,
    set_facts,
    url_host,
)
from agentfence.policy import Effect
from agentfence.tools import ToolCatalog

# --- addresses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("bob@acme.test", "bob@acme.test"),
        ("BOB@ACME.TEST", "bob@acme.test"),  # letter case is not a different mailbox
        ("Bob.Smith+tickets@Mail.Acme.test", "bob.smith+tickets@mail.acme.test"),
        ("o'neil@acme.test", "o'neil@acme.test"),  # RFC 5322 atext
        ("bob@bücher.example", "bob@xn--bcher-kva.example"),  # IDN: the ASCII (IDNA) form
        ("bob@BÜCHER.example", "bob@xn--bcher-kva.example"),
        ("bob@xn--bcher-kva.example", "bob@xn--bcher-kva.example"),
    ],
)
def test_one_well_formed_address_is_an_email(value: str, address: str) -> None:
    facts = facts_of(value)
    domain = address.rsplit("@", 1)[1]
    assert facts == ValueFacts(
        "email",
        email=address,
        email_domain=domain,
        domain=domain,
        normalized=facts.normalized,
        compact=facts.compact,
    )


@pytest.mark.parametrize(
    "value",
    [
        "attacker@evil.example,bob@acme.test",  # comma list
        "attacker@evil.example;bob@acme.test",  # semicolon list
        "attacker@evil.example bob@acme.test",  # space list
        "bob@acme.test\nattacker@evil.example",  # newline trick
        "attacker@evil.example\r\nbob@acme.test",  # CRLF (header injection)
        "bob@acme.test\r\nBcc: attacker@evil.example",
        "bob@acme.test\n",  # a trailing newline ("$" in a regex would accept it)
        " bob@acme.test",
        "bob@acme.test ",
        "bob@acme.test\t",
        "Bob <bob@acme.test>",  # display name
        "<bob@acme.test>",  # angle brackets
        "bob@acme.test <attacker@evil.example>",
        '"attacker@evil.example"@acme.test',  # quoted local part
        '"bob"@acme.test',
        "bob(comment)@acme.test",  # RFC 5322 comment
        "bob@acme.test(comment)",
        "attacker%evil.example@acme.test",  # percent hack (source routing)
        "attacker%40evil.example@acme.test",  # percent-encoded "@"
        "evil.example!attacker@acme.test",  # bang path
        "@evil.example:bob@acme.test",  # RFC 5321 source route
        "bob@acme.test.",  # trailing dot
        "bob@acme..test",
        "bob@.acme.test",
        "bob@-acme.test",
        "bob@acme-.test",
        "bob.@acme.test",
        ".bob@acme.test",
        "bo..b@acme.test",
        "@acme.test",
        "bob@",
        "bob",
        "bob@localhost",  # a single label
        "bob@[10.0.0.1]",  # domain literal
        "bob@10.0.0.1",  # a numeric top-level label
        "bob@acme.t",  # a one-letter top-level label
        "bob@acme.test\u200b",  # zero-width space
        "bob\u200b@acme.test",
        "bob@acme\u00ad.test",  # soft hyphen
        "bob\uff20acme.test",  # fullwidth commercial at
        "bob@\uff41cme.test",  # fullwidth a: IDNA would map it
        "bob@acme\u3002test",  # ideographic full stop
        "bob@acme\uff0etest",  # fullwidth full stop
        "b\u00f6b@acme.test",  # a non-ASCII local part (refused: fail closed)
        "bob@acme.test\x00",
        "x" * 65 + "@acme.test",  # a local part over 64 characters
        "bob@" + "a" * 64 + ".test",  # a label over 63 characters
        "bob@" + ".".join(["a" * 60] * 5) + ".test",  # a name over 253 characters
    ],
)
def test_anything_but_exactly_one_address_has_no_email_domain(value: str) -> None:
    facts = facts_of(value)
    assert (facts.email, facts.email_domain) == ("", "")
    assert facts.kind != "email"
    assert email_address(value) is None


def test_a_lookalike_domain_is_reported_as_what_it_is() -> None:
    # The like idiom's classic misses, read exactly: none of them is acme.test.
    assert facts_of("bob@acme.test.evil.example").email_domain == "acme.test.evil.example"
    assert facts_of("bob@evilacme.test").email_domain == "evilacme.test"
    assert facts_of("bob@acme.test.").email_domain == ""
    # A Cyrillic a (U+0430) makes another domain, in its ASCII form.
    assert facts_of("bob@\u0430cme.test").email_domain == "xn--cme-5cd.test"
    # Its folded text looks the same, which is what a keyword check wants.
    assert facts_of("bob@\u0430cme.test").normalized == "bob@acme.test"


# --- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "host", "domain"),
    [
        ("https://docs.acme.test/guide", "docs.acme.test", "docs.acme.test"),
        ("HTTPS://Docs.ACME.test/Guide?x=1#top", "docs.acme.test", "docs.acme.test"),
        ("http://acme.test", "acme.test", "acme.test"),
        ("https://acme.test:8443/x", "acme.test", "acme.test"),
        ("wss://chat.acme.test/socket", "chat.acme.test", "chat.acme.test"),
        ("https://docs.acme.test/@evil.example", "docs.acme.test", "docs.acme.test"),
        ("https://docs.acme.test/a%2Fb?q=%40", "docs.acme.test", "docs.acme.test"),
        ("https://bücher.example/", "xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("https://10.0.0.1/admin", "10.0.0.1", ""),  # an address has a host, no domain
        ("https://[::1]:8080/", "[::1]", ""),
        ("https://[2001:DB8:0:0::1]/", "[2001:db8::1]", ""),
        ("www.site.example/path", "www.site.example", "www.site.example"),  # scheme-less
        ("docs.acme.test:8080/x", "docs.acme.test", "docs.acme.test"),
    ],
)
def test_one_well_formed_url_has_its_host(value: str, host: str, domain: str) -> None:
    facts = facts_of(value)
    assert (facts.kind, facts.host, facts.domain) == ("url", host, domain)
    assert facts.email_domain == ""


@pytest.mark.parametrize(
    "value",
    [
        "https://docs.acme.test@evil.example/",  # userinfo: the host is evil.example
        "https://user:pw@docs.acme.test/",  # userinfo at all: parsers split it differently
        "https://evil.example\\@docs.acme.test/x",  # backslash: urllib and browsers disagree
        "https:\\\\evil.example/",
        "https://docs.acme.test%2F@evil.example/",
        "https://docs%2eacme.test/",  # a percent-encoded host
        "https://docs.acme.test:/x",  # an empty port
        "https://docs.acme.test:0/",
        "https://docs.acme.test:99999/",
        "https://docs.acme.test:80x/",
        "https://docs.acme.test./",  # trailing dot
        "https://0x7f.1/",  # hex and short IPv4 forms some resolvers accept
        "https://2130706433/",  # an integer IPv4 address
        "https://010.0.0.1/",  # a leading zero (octal to some)
        "https://256.0.0.1/",
        "https://[::1/",
        "https://[::1]x/",
        "https://[not-an-address]/",
        "https:///path",  # no host
        "https://docs.acme.test/x y",  # whitespace
        "https://docs.acme.test/\nhttps://evil.example/",
        "https://docs.acme.test/\u200b",
        "javascript://docs.acme.test/%0aalert(1)",  # not a scheme that names a host
        "file:///etc/passwd",
        "mailto:bob@acme.test",
        "https://\uff44ocs.acme.test/",  # fullwidth d: IDNA would map it
    ],
)
def test_a_url_parsers_could_read_differently_has_no_host(value: str) -> None:
    facts = facts_of(value)
    assert (facts.host, facts.domain) == ("", "")
    assert facts.kind != "url"
    assert url_host(value) is None


# --- domains, paths, text ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "domain"),
    [
        ("acme.test", "domain", "acme.test"),
        ("Docs.ACME.test", "domain", "docs.acme.test"),
        ("xn--bcher-kva.example", "domain", "xn--bcher-kva.example"),
        ("acme.test.", "text", ""),
        ("acme", "text", ""),
        ("10.0.0.1", "text", ""),
        ("1.5", "text", ""),
        ("acme.test,evil.example", "text", ""),
        ("/home/alice/tmp", "path", ""),
        ("~/notes.txt", "path", ""),
        ("~", "path", ""),
        ("./a/b", "path", ""),
        ("../../etc/passwd", "path", ""),
        ("C:\\Users\\alice", "path", ""),
        ("quarterly report", "text", ""),
        ("", "text", ""),
    ],
)
def test_kinds(value: str, kind: str, domain: str) -> None:
    facts = facts_of(value)
    assert (facts.kind, facts.domain) == (kind, domain)
    assert domain_name(value) == (domain or None)


# --- normalised text --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("PASSWORD", "password"),
        ("Pass\u200bword", "password"),  # zero-width space
        ("pass\u200cwo\u200drd", "password"),  # zero-width non-joiner and joiner
        ("pass\u2060word\ufeff", "password"),  # word joiner, byte order mark
        ("pass\u00adword", "password"),  # soft hyphen
        ("pass\u3164word", "password"),  # Hangul filler (a letter that shows nothing)
        ("p\u0430ssword", "password"),  # Cyrillic a
        ("\u0420\u0410SSW\u041eRD", "password"),  # Cyrillic capital er, a and o
        ("passw\u03bfrd", "password"),  # Greek omicron
        ("\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44", "password"),  # fullwidth
        ("\U0001d429\U0001d41a\U0001d42c\U0001d42c", "pass"),  # mathematical bold
        ("p\u0332a\u0332s\u0332s\u0332", "pass"),  # combining low line
        ("p\u00e1ssw\u00f6rd", "password"),  # accents
        ("STRASSE stra\u00dfe", "strasse strasse"),  # case folding
        ("  two\t\n words\u00a0here ", "two words here"),  # whitespace runs, NBSP
        ("\u202edrowssap", "drowssap"),  # the override goes; the letters stay reversed
        ("\u0397\u03b7", "hn"),  # Greek capital eta reads H, small eta reads n
    ],
)
def test_normalized_text_folds_what_keyword_checks_miss(text: str, normalized: str) -> None:
    assert normalize_text(text) == normalized


def test_compact_text_drops_everything_but_letters_and_digits() -> None:
    assert facts_of("p a s s-w.o_r/d").compact == "password"
    assert facts_of("P@ss w0rd").compact == "pssw0rd"  # digits for letters are not folded
    assert facts_of("hunter2!").compact == "hunter2"


# --- sets -------------------------------------------------------------------------------------


def test_a_set_reports_each_item_with_empty_strings_for_malformed_ones() -> None:
    facts = set_facts(["bob@acme.test", "attacker@evil.example,carol@acme.test"])
    assert facts["email_domains"] == ["", "acme.test"]
    assert facts["emails"] == ["", "bob@acme.test"]
    assert facts["kinds"] == ["email", "text"]
    assert facts["all_emails"] is False


def test_a_set_of_addresses() -> None:
    facts = set_facts(["Bob@acme.test", "carol@mail.acme.test"])
    assert facts["email_domains"] == ["acme.test", "mail.acme.test"]
    assert facts["all_emails"] is True and facts["all_urls"] is False


def test_an_empty_set_is_vacuously_all_emails_as_contains_all_is() -> None:
    facts = set_facts([])
    assert facts["all_emails"] is True and facts["email_domains"] == []


# --- wiring: declared and computed only when named --------------------------------------------


class Channel(enum.Enum):
    MAIL = "mail"
    CHAT = "chat"


@tool
def send(to: str, body: str, cc: list[str], channel: Channel, note: str | None = None) -> str:
    """Send a message."""
    return "sent"


@tool
def charge(amount: float, memo: str = "none") -> str:
    """Charge an amount."""
    return "charged"


govern(send, groups=["external_send"], resource=Resource("Recipient", arg="to"))


@pytest.mark.parametrize(
    "text",
    [
        'when { context.values.to.kind == "email" }',
        'when { context["values"].to.kind == "email" }',
        "when { context has values }",
        'when { context has "values" }',
        "when { context . values.to.kind }",
    ],
)
def test_flow_parts_see_every_way_of_naming_values(text: str) -> None:
    parts = FlowParts.of([text])
    assert "values" in parts
    # context.values needs no thread history: the fence does not index threads for it.
    assert parts.roots == frozenset()


@pytest.mark.parametrize(
    "text",
    [
        "when { context.args.values == 1 }",
        "// context.values.to.kind\nwhen { true }",
        "when { context.valuesx == 1 }",
    ],
)
def test_flow_parts_ignore_what_does_not_name_values(text: str) -> None:
    assert "values" not in FlowParts.of([text])


def test_the_schema_declares_values_per_string_argument() -> None:
    catalog = ToolCatalog.from_tools([send, charge])
    schema = generate_schema(catalog, flow=FlowParts(frozenset(), (), values=ALL))
    assert "type AgentfenceValue = {" in schema and "type AgentfenceValues = {" in schema
    assert '"values": {\n      "to": AgentfenceValue,\n      "body": AgentfenceValue' in schema
    assert '"cc": AgentfenceValues' in schema
    assert '"channel": AgentfenceValue' in schema  # an enum of strings is a String
    assert '"note"?: AgentfenceValue' in schema  # optional as in context.args
    assert '"memo": AgentfenceValue' in schema  # a default is filled in
    assert '"amount"' not in schema.split('"values"')[-1]  # numbers get no value facts
    cedarpy.Schema.from_str(schema)
    bare = generate_schema(catalog, flow=FlowParts(frozenset(), ()))
    assert "values" not in bare and "AgentfenceValue" not in bare
    assert "type AgentfenceValue = {" in generate_schema(catalog, flow=ALL_FLOW)


POLICY = """
@id("known-domain")
permit (principal, action == Action::"send", resource)
when {
  ["acme.test"].contains(context.values.to.email_domain) &&
  context.values.cc.all_emails &&
  ["acme.test"].containsAll(context.values.cc.email_domains)
};

@id("no-secrets")
forbid (principal, action in Action::"external_send", resource)
when {
  context.values.body.compact like "*password*" ||
  (context.values has note && context.values.note.normalized like "*password*")
};

@id("charge")
permit (principal, action == Action::"charge", resource)
when { context.values.memo.kind == "text" };
"""


@pytest.fixture
def fence(tmp_path: Path) -> Fence:
    (tmp_path / "p.cedar").write_text(POLICY)
    return Fence.from_directory(tmp_path, tools=[send, charge])


def decide(fence: Fence, **args: Any) -> Any:
    base: dict[str, Any] = {"to": "bob@acme.test", "body": "hi", "cc": [], "channel": "mail"}
    return fence.decide("send", {**base, **args}, principal="alice")


def test_the_request_carries_values_computed_from_the_converted_arguments(fence: Fence) -> None:
    decision = decide(fence, to="Bob@ACME.test", cc=["carol@acme.test"], note="FYI")
    assert decision.effect is Effect.ALLOW, decision.reasons
    values = (decision.request or {})["context"]["values"]
    # Only the arguments and attributes the policies name are there (see the next test):
    # not "channel", nor "email" or "host".
    one = {"kind": "text", "email_domain": ""}
    assert values == {
        "to": {
            "kind": "email",
            "email_domain": "acme.test",
            "compact": "bobacmetest",
            "normalized": "bob@acme.test",
        },
        "body": {**one, "compact": "hi", "normalized": "hi"},
        "cc": {
            "email_domains": ["acme.test"],
            "all_emails": True,
            "compact": ["carolacmetest"],
            "normalized": ["carol@acme.test"],
        },
        "note": {**one, "compact": "fyi", "normalized": "fyi"},
    }
    # The engine computes only what the policies name: no data-flow roots here.
    assert set((decision.request or {})["context"]) == {"agent", "run", "args", "values"}


def test_only_the_arguments_and_attributes_the_policies_name_are_declared() -> None:
    selection = Selection.of(
        ['when { context.values.to.email_domain == "acme.test" && context.values["cc"] has kinds }']
    )
    assert selection.wants("to") and selection.wants("cc") and not selection.wants("body")
    annotated = Selection.of(['@reason("the body")\npermit (principal, action, resource);'])
    assert not annotated.wants("reason") and not annotated.wants("the body")
    catalog = ToolCatalog.from_tools([send, charge])
    schema = generate_schema(catalog, flow=FlowParts(frozenset(), (), values=selection))
    assert 'type AgentfenceValue = {\n  "email_domain": String\n};' in schema
    assert 'type AgentfenceValues = {\n  "kinds": Set<String>\n};' in schema
    declared = '"values": {\n      "to": AgentfenceValue,\n      "cc": AgentfenceValues\n    }'
    assert declared in schema
    # charge's memo is not named: its context has no values at all.
    assert schema.count('"values"') == 1
    cedarpy.Schema.from_str(schema)


def test_a_policy_naming_an_attribute_that_does_not_exist_fails_loading(tmp_path: Path) -> None:
    (tmp_path / "p.cedar").write_text(
        '@id("typo")\npermit (principal, action == Action::"send", resource)\n'
        'when { context.values.to.email_domian == "acme.test" };\n'
    )
    with pytest.raises(PolicyLoadError) as info:
        Fence.from_directory(tmp_path, tools=[send, charge])
    assert "p.cedar" in str(info.value) and "email_domian" in str(info.value)


def test_an_absent_optional_argument_has_no_values(fence: Fence) -> None:
    decision = decide(fence)
    assert "note" not in (decision.request or {})["context"]["values"]
    assert decision.effect is Effect.ALLOW


def test_a_default_filled_in_gets_values_too(fence: Fence) -> None:
    decision = fence.decide("charge", {"amount": 5.0}, principal="alice")
    assert decision.effect is Effect.ALLOW
    assert (decision.request or {})["context"]["values"]["memo"]["normalized"] == "none"


@pytest.mark.parametrize(
    ("args", "policy"),
    [
        ({"to": "attacker@evil.example,bob@acme.test"}, ()),
        ({"cc": ["carol@acme.test", "bob@acme.test\nattacker@evil.example"]}, ()),
        ({"cc": ["attacker@evil.example"]}, ()),
        ({"body": "the PASS\u200bWORD is x"}, ("no-secrets",)),
        ({"note": "p\u0430ssword inside"}, ("no-secrets",)),
    ],
)
def test_the_typed_idioms_deny(fence: Fence, args: dict[str, Any], policy: tuple[str]) -> None:
    decision = decide(fence, **args)
    assert decision.effect is Effect.DENY
    assert decision.policy_ids == policy


def test_a_policy_set_without_values_gets_none(tmp_path: Path) -> None:
    (tmp_path / "p.cedar").write_text(
        '@id("any")\npermit (principal, action == Action::"charge", resource);\n'
    )
    fence = Fence.from_directory(tmp_path, tools=[send, charge])
    decision = fence.decide("charge", {"amount": 5.0}, principal="alice")
    assert decision.effect is Effect.ALLOW
    assert set((decision.request or {})["context"]) == {"agent", "run", "args"}
