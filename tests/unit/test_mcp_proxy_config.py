"""``agentfence mcp serve``'s configuration: the TOML file and the --upstream option."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentfence.errors import ConfigurationError
from agentfence.mcp import ProxyConfig, Upstream


def test_config_file_reads_fence_and_servers_relative_to_itself(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(
        """
[fence]
policies = "policies"
log = "sqlite:///fence.db"
signing_key = "keys/fence.key"
principal = 'User::"alice"'

[servers.notes]
command = "python"
args = ["notes.py", "--quiet"]
env = { NOTES = "1" }

[servers.tickets]
command = "tickets-mcp"
prefix = true
"""
    )
    config = ProxyConfig.load(path)
    assert config.policies == str(tmp_path / "policies")
    assert config.signing_key == str(tmp_path / "keys" / "fence.key")
    assert config.log == "sqlite:///fence.db"
    assert config.principal == 'User::"alice"'
    assert config.upstreams == (
        Upstream("notes", "python", ("notes.py", "--quiet"), {"NOTES": "1"}),
        Upstream("tickets", "tickets-mcp", prefix=True),
    )


def test_misspelt_server_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text('[servers.notes]\ncommand = "python"\nargz = ["x"]\n')
    with pytest.raises(ConfigurationError) as caught:
        ProxyConfig.load(path)
    assert "[servers.notes] has unknown key(s) ['argz']" in str(caught.value)


def test_misspelt_fence_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text("[fence]\nprincipals = 'User::\"a\"'\n")
    with pytest.raises(ConfigurationError) as caught:
        ProxyConfig.load(path)
    assert "[fence] has unknown key(s) ['principals']" in str(caught.value)


def test_identity_that_is_not_a_table_is_named(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text('identity = "https://id.example.com"\n')
    with pytest.raises(ConfigurationError) as caught:
        ProxyConfig.load(path)
    assert "[identity] must be a table of BearerTokenResolver's options" in str(caught.value)


def test_identity_table_reads_its_options_and_the_token_variable(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(
        '[identity]\nissuer = "https://id"\naudience = "p"\njwks_file = "jwks.json"\n'
        'token_env = "MY_TOKEN"\n'
    )
    config = ProxyConfig.load(path)
    assert config.token_env == "MY_TOKEN"
    assert config.identity == {
        "issuer": "https://id",
        "audience": "p",
        "jwks_file": str(tmp_path / "jwks.json"),
    }


def test_upstream_option_is_split_as_a_shell_would() -> None:
    assert Upstream.parse("notes=python 'my server.py' -v") == Upstream(
        "notes", "python", ("my server.py", "-v")
    )
    with pytest.raises(ConfigurationError) as caught:
        Upstream.parse("python server.py")
    assert "is not NAME=COMMAND" in str(caught.value)
