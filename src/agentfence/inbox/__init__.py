"""The approvers' web inbox: pending requests, the evidence, and signed answers in a browser.

``agentfence inbox serve`` runs it (the ``inbox`` extra: ``pip install 'agentfence[inbox]'``);
``agentfence inbox add-approver`` creates sign-ins. The pieces:

- :class:`ApproverAccounts`: approvers' passwords (scrypt), server-side sessions and API
  tokens (stored as SHA-256), in the decision log's database beside the approvals store;
- :class:`Inbox`: what waits for whom, the request's evidence from the log, and the answer
  path (sign with the approver's key, check as the fence will, store), with no web code;
- :func:`create_app`: the Starlette application over an :class:`Inbox`, with the answer
  API under ``/api/v1/`` (:mod:`agentfence.inbox.api`) for programs holding an API token
  (``agentfence inbox token issue``; :meth:`ApproverAccounts.issue_token`).

See ``docs/approver-guide.md`` (section "The web inbox") for how to run and use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfence.errors import ConfigurationError
from agentfence.inbox.accounts import Account, ApproverAccounts, Session
from agentfence.inbox.inbox import Inbox, InboxRefused
from agentfence.inbox.sensitive import SensitiveArgs

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = [
    "Account",
    "ApproverAccounts",
    "Inbox",
    "InboxRefused",
    "SensitiveArgs",
    "Session",
    "create_app",
]

EXTRA_HINT = "pip install 'agentfence[inbox]'"


def create_app(
    inbox: Inbox, *, secure_cookies: bool | None = None, poll_seconds: float = 2.0
) -> Starlette:
    """The inbox's ASGI application (Starlette) over ``inbox``; needs the ``inbox`` extra.

    ``secure_cookies``: ``True`` always marks cookies Secure; ``None`` (the default) marks
    them Secure when a request came over TLS. ``poll_seconds``: how often the pending list
    refreshes itself.
    """
    try:
        from agentfence.inbox.app import create_app as _create_app
    except ImportError as exc:
        raise ConfigurationError(
            f"the web inbox needs its web stack, which is not installed ({exc}); run `{EXTRA_HINT}`"
        ) from exc
    return _create_app(inbox, secure_cookies=secure_cookies, poll_seconds=poll_seconds)
