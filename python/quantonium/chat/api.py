"""The OpenAI chat-completions protocol as this server speaks it: request schema, errors, responses.

Requests are validated strictly (pydantic, JSON mode, unknown fields
refused): a malformed body or a bad parameter is a 4xx in OpenAI's error
shape ``{"error": {"message", "type", "param", "code"}}``, never a guess.
Parameters this server does not implement are refused unless they carry
their neutral value (``n=1``, penalties 0, ``logprobs`` false), so that a
client never believes it got something it did not.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

__all__ = ["ApiError", "ChatRequest", "completion", "chunk", "error_body", "parse_request"]


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",  # noqa: A002
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(message: str, *, type: str = "invalid_request_error", param: str | None = None,  # noqa: A002
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[TextPart], None] = None
    name: str | None = None
    refusal: str | None = None


class StreamOptions(_Strict):
    include_usage: bool = False
    include_obfuscation: bool | None = None


class ChatRequest(_Strict):
    model: str = Field(min_length=1, max_length=256)
    messages: list[Message] = Field(min_length=1, max_length=1024)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    stop: Union[str, list[str], None] = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    # accepted only at their neutral value
    n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    # accepted and ignored: they do not change the reply
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    _max_tokens: int = PrivateAttr(0)
    _stops: tuple = PrivateAttr(())

    def checked(self, max_tokens_limit: int, default_max_tokens: int) -> ChatRequest:
        """Checks what the schema cannot say; raises :class:`ApiError`."""
        if self.n not in (None, 1):
            raise ApiError(400, "n must be 1: this server generates one choice per request", param="n")
        for p in ("presence_penalty", "frequency_penalty"):
            if getattr(self, p) not in (None, 0, 0.0):
                raise ApiError(400, f"{p} is not supported by this server (only 0)", param=p)
        if self.logprobs:
            raise ApiError(400, "logprobs are not supported by this server", param="logprobs")
        if self.max_tokens is not None and self.max_completion_tokens is not None and self.max_tokens != self.max_completion_tokens:
            raise ApiError(400, "max_tokens and max_completion_tokens disagree; give one", param="max_tokens")
        mt = self.max_completion_tokens or self.max_tokens
        if mt is not None and mt > max_tokens_limit:
            raise ApiError(400, f"max_tokens is {mt}, above this server's limit of {max_tokens_limit}", param="max_tokens")
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4 or any(not s or len(s) > 256 for s in stops):
            raise ApiError(400, "stop takes at most 4 non-empty strings of at most 256 characters", param="stop")
        if self.stream_options is not None and not self.stream:
            raise ApiError(400, "stream_options is only allowed with stream=true", param="stream_options")
        self._max_tokens = mt or min(default_max_tokens, max_tokens_limit)
        self._stops = tuple(stops)
        return self

    @property
    def effective_max_tokens(self) -> int:
        return self._max_tokens

    @property
    def stops(self) -> tuple[str, ...]:
        return self._stops

    def chat_messages(self) -> list[dict[str, str]]:
        """The messages as the chat template takes them (text parts joined; developer -> system)."""
        out = []
        for m in self.messages:
            if isinstance(m.content, list):
                text = "".join(p.text for p in m.content)
            else:
                text = m.content or ""
            out.append({"role": "system" if m.role == "developer" else m.role, "content": text})
        return out


def parse_request(body: bytes, *, max_tokens_limit: int, default_max_tokens: int) -> ChatRequest:
    """The validated request, or :class:`ApiError` (400) naming the first problem."""
    try:
        req = ChatRequest.model_validate_json(body)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        if err["type"] in ("json_invalid", "json_type"):
            raise ApiError(400, f"the body is not valid JSON: {err['msg']}", code="invalid_json") from None
        if err["type"] == "model_type" or not err["loc"]:
            raise ApiError(400, "the body must be a JSON object", code="invalid_json") from None
        loc = ".".join(str(x) for x in err["loc"])
        param = str(err["loc"][0])
        if err["type"] == "extra_forbidden":
            raise ApiError(400, f"unknown or unsupported parameter {loc!r}", param=loc, code="unsupported_parameter") from None
        raise ApiError(400, f"{loc}: {err['msg']}", param=param) from None
    return req.checked(max_tokens_limit, default_max_tokens)


def new_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def _finish(reason: str) -> str:
    return reason if reason in ("stop", "length") else "stop"


def completion(cid: str, model: str, text: str, finish_reason: str, usage: dict[str, int],
               extra: dict[str, Any]) -> dict[str, Any]:
    """A non-streamed ``chat.completion`` object."""
    return {
        "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                     "logprobs": None, "finish_reason": _finish(finish_reason)}],
        "usage": usage, "quantonium": extra,
    }


def chunk(cid: str, created: int, model: str, *, delta: dict[str, Any] | None = None,
          finish_reason: str | None = None, usage: dict[str, int] | None = None,
          extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One ``chat.completion.chunk`` (``delta`` None: the usage chunk, with no choice)."""
    out: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                           "system_fingerprint": None,
                           "choices": [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                                                 "finish_reason": finish_reason and _finish(finish_reason)}]}
    if usage is not None:
        out["usage"] = usage
    if extra is not None:
        out["quantonium"] = extra
    return out
