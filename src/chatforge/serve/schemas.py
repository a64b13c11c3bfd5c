"""OpenAI's request and response shapes (the subset chatforge serves), as pydantic models.

Validation is strict (no "10" for 10, no true for 1) so a wrong type is a 422 naming the field. The sampling
fields are OpenAI's (temperature, top_p, frequency_penalty, presence_penalty, seed, stop) plus vLLM's extensions
top_k, min_p and repetition_penalty. Other unknown fields (user, ...) are accepted and ignored; the few that
would change what the server runs (a chat template, n != 1, logprobs, modalities: serve.app._UNSUPPORTED) are
refused by the routes with a 400.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# ---- requests ------------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    # NaN and Infinity are not JSON but Python's parser reads them; refused as "must be a finite number" (not
    # as a misleading range error) before any range check sees them.
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class RequestFunction(_Strict):
    name: str
    arguments: str  # JSON text, as OpenAI sends it


class RequestToolCall(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: RequestFunction


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None  # required except on an assistant message that calls tools
    tool_calls: list[RequestToolCall] | None = None
    tool_call_id: str | None = None

    def as_template_message(self) -> dict:
        """{"role", "content": str} for the chat template; "developer" is OpenAI's new name for "system"."""
        text = self.content if isinstance(self.content, str) else "\n".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(_Strict):
    include_usage: bool = False


class SamplingFields(_Strict):
    """Fields shared by both completion routes."""

    model: str | None = None  # optional here (the server has one model); checked against it when given
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = Field(None, max_length=4)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    top_k: int | None = Field(None, ge=-1)  # vLLM extension; 0 or -1 = all tokens
    min_p: float | None = Field(None, ge=0, le=1)  # vLLM extension
    # vLLM extension; 1 = off. A vanishing one (1e-300 is 0 in float32) sends the penalized logits to inf and the
    # sampler fails (with the whole batch): 0.01 is far from that, even at the smallest temperature
    repetition_penalty: float | None = Field(None, ge=0.01, le=10)
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)  # what torch.Generator accepts
    n: int | None = 1  # null (what OpenAI's schema allows, and some clients send) is the default
    stream: bool | None = False
    stream_options: StreamOptions | None = None

    def stop_strings(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return tuple(s for s in stops if s)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(SamplingFields):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # OpenAI's newer name for max_tokens
    store: bool | None = None  # OpenAI's field: false = do not keep this exchange (the server keeps it by default)
    metadata: dict[str, str] | None = Field(None, max_length=16)  # "conversation_id" groups exchanges in the store
    tools: list | None = None  # checked by serve.tools (400 naming the field)
    tool_choice: str | dict | None = None
    parallel_tool_calls: bool | None = None


class CompletionRequest(SamplingFields):
    prompt: str | list[str]
    store: bool | None = None  # as for chat: false = do not keep this exchange
    metadata: dict[str, str] | None = Field(None, max_length=16)


# ---- responses -----------------------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> "Usage":
        return cls(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                   total_tokens=prompt_tokens + completion_tokens)


class ResponseFunction(BaseModel):
    name: str
    arguments: str  # JSON text


class ResponseToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: ResponseFunction


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ResponseToolCall] | None = None


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChunkChoice(BaseModel):
    index: int = 0
    delta: dict[str, Any]  # {"role": "assistant", "content": ""} first, then {"content": ...} or
    # {"tool_calls": [...]}, then {}
    finish_reason: Literal["stop", "length", "tool_calls"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None  # only in the last chunk, and only with stream_options.include_usage


class TextChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "chatforge"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
