"""What a vLLM OpenAI server sends: SSE chunks, whole answers, error bodies, model lists.

Shapes follow vLLM 0.2x-0.3x: a chat stream opens with a role event (empty content); a usage event
(`"choices": []`) comes last, only when `stream_options.include_usage` is set; errors are
`{"error": {"message", "type", "param", "code"}}`. Token counts are word counts (the testbed's
word-level tokenizer makes them exact). `created` is 0 so that tests can rebuild the exact bytes.
"""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"
DEFAULT_MAX_TOKENS = 16
_ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError", 422: "BadRequestError"}


def sse(obj: Any) -> bytes:
    """One SSE event: `data: <json>\\n\\n`."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def is_chat(path: str) -> bool:
    return path.endswith("/chat/completions")


def prompt_text(body: dict[str, Any]) -> str:
    """The prompt as one string (chat: the messages' contents joined)."""
    if "messages" in body:
        return " ".join(str(m.get("content", "")) for m in body.get("messages") or [] if isinstance(m, dict))
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else " ".join(map(str, prompt))


def prompt_tokens(body: dict[str, Any]) -> int:
    return len(prompt_text(body).split())


def token_text(i: int, pad_to: int = 0) -> str:
    """The i-th generated token's text (` t0`, ` t1`, ...), padded with `x` to `pad_to` characters."""
    text = f" t{i}"
    return text + "x" * (pad_to - len(text)) if pad_to > len(text) else text


def chunk_base(request_id: str, model: str, chat: bool) -> dict[str, Any]:
    obj = "chat.completion.chunk" if chat else "text_completion"
    return {"id": request_id, "object": obj, "created": 0, "model": model}


def text_chunk(base: dict[str, Any], text: str, finish: str | None, chat: bool) -> bytes:
    if chat:
        choice: dict[str, Any] = {
            "index": 0,
            "delta": {"content": text},
            "logprobs": None,
            "finish_reason": finish,
        }
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish, "stop_reason": None}
    return sse({**base, "choices": [choice]})


def role_chunk(base: dict[str, Any]) -> bytes:
    """vLLM's first chat event: the role, with empty content."""
    return sse(
        {
            **base,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        }
    )


def usage(n_in: int, n_out: int) -> dict[str, int]:
    return {"prompt_tokens": n_in, "total_tokens": n_in + n_out, "completion_tokens": n_out}


def usage_chunk(base: dict[str, Any], n_in: int, n_out: int) -> bytes:
    return sse({**base, "choices": [], "usage": usage(n_in, n_out)})


def stream_events(
    path: str, body: dict[str, Any], request_id: str, model: str, n_out: int, pad_to: int = 0
) -> list[bytes]:
    """The SSE events of a streamed answer with `n_out` tokens, without `data: [DONE]`."""
    chat = is_chat(path)
    base = chunk_base(request_id, model, chat)
    events = [role_chunk(base)] if chat else []
    for i in range(n_out):
        events.append(text_chunk(base, token_text(i, pad_to), "length" if i == n_out - 1 else None, chat))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(usage_chunk(base, prompt_tokens(body), n_out))
    return events


def whole_answer(
    path: str,
    body: dict[str, Any],
    request_id: str,
    model: str,
    n_out: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A non-streamed answer with `n_out` tokens; `extra` fields are added at the top level."""
    text = "".join(token_text(i) for i in range(n_out))
    if is_chat(path):
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "length",
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
        obj = "text_completion"
    answer: dict[str, Any] = {
        "id": request_id,
        "object": obj,
        "created": 0,
        "model": model,
        "choices": [choice],
        "usage": usage(prompt_tokens(body), n_out),
    }
    answer.update(extra or {})
    return answer


def error_body(status: int, message: str) -> dict[str, Any]:
    """vLLM's error body."""
    kind = _ERROR_TYPES.get(status, "BadRequestError" if 400 <= status < 500 else "InternalServerError")
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


def models_body(model: str, root: str | None, max_model_len: int) -> dict[str, Any]:
    entry = {
        "id": model,
        "object": "model",
        "created": 0,
        "owned_by": "vllm",
        "root": root or model,
        "parent": None,
        "max_model_len": max_model_len,
    }
    return {"object": "list", "data": [entry]}
