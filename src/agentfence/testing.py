"""Test doubles for agentfence users: a scripted chat model and logs that fail on purpose.

``ScriptedChatModel`` lets a real LangGraph graph or ``create_agent`` agent run offline with
no API key: it answers each model call with the next message of its script.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from agentfence.errors import LogError
from agentfence.log import MemoryLog, Receipt
from agentfence.records import ActivationRecord, Blob, LogRecord

__all__ = ["FailingLog", "MemoryLog", "ScriptedChatModel", "tool_call"]


def tool_call(name: str, args: dict[str, Any], call_id: str) -> dict[str, Any]:
    """A tool call as a chat model emits it, for building scripts."""
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


class ScriptedChatModel(BaseChatModel):
    """A chat model that replies with a fixed script of messages, one per call.

    ``bind_tools`` returns the model itself, so it works in ``create_agent`` and in a
    hand-built ``StateGraph``. When the script runs out it raises, naming how many replies it
    had, so a test never loops silently.
    """

    responses: list[AIMessage]
    _position: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "agentfence-scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        """Accept any tools; the script decides what is called."""
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        with self._lock:
            if self._position >= len(self.responses):
                raise RuntimeError(
                    f"ScriptedChatModel has no reply left: its script had "
                    f"{len(self.responses)} replies; add more to the script"
                )
            message = self.responses[self._position]
            self._position += 1
        return ChatResult(generations=[ChatGeneration(message=message)])

    @property
    def calls(self) -> int:
        """How many replies have been given."""
        return self._position


class FailingLog(MemoryLog):
    """A decision log whose appends raise :class:`LogError`, to test failing closed.

    ``fail_when`` chooses which records fail; by default every record but the policy
    activation, so that a fence can be built on it and then fails on every call.
    """

    def __init__(self, fail_when: Callable[[LogRecord], bool] | None = None) -> None:
        super().__init__()
        self._fail_when = fail_when or (lambda record: not isinstance(record, ActivationRecord))

    def append(self, record: LogRecord, blobs: Sequence[Blob] = ()) -> Receipt:
        """Raise for records ``fail_when`` selects; append the others."""
        if self._fail_when(record):
            raise LogError("the decision log is unavailable (FailingLog)")
        return super().append(record, blobs)
