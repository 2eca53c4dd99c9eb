"""The server's own tokenizer over HTTP, for a runner that does not have the model's files.

vLLM's OpenAI server answers ``POST /tokenize {"model", "prompt", "add_special_tokens"}`` with
``{"tokens", "count", "max_model_len"}``. Counting is all the workloads need to build prompts of an exact
token count (experiments.workloads builds them from words when a tokenizer can only count). The runner
uses it when the tokenizer path is not on this machine: a hub model id, or a path on the server's host.
Our P/D proxy serves no /tokenize, so the instances behind it are asked as well.
"""

from __future__ import annotations

import http.client
import urllib.parse
from collections.abc import Iterable

import orjson

PROBE_TEXT = "hello world"


class TokenizerUnavailable(Exception):
    """No server answered /tokenize (the message says what each one said)."""


class ServerTokenizer:
    """`encode` through one server's POST /tokenize, on one kept-alive connection."""

    def __init__(self, url: str, model: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.name = f"{self.url}/tokenize"
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TokenizerUnavailable(f"{url!r} is not an http(s) URL")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._conn: http.client.HTTPConnection | None = None

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` as the server counts them, without special tokens (like our local path)."""
        body = orjson.dumps({"model": self.model, "prompt": text, "add_special_tokens": False})
        status, data = self._post("/tokenize", body)
        if status != 200:
            raise TokenizerUnavailable(f"{self.name} answered HTTP {status}: {data[:200]!r}")
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise TokenizerUnavailable(f"{self.name} did not answer JSON: {data[:200]!r}") from None
        tokens = doc.get("tokens") if isinstance(doc, dict) else None
        if not isinstance(tokens, list):
            raise TokenizerUnavailable(f"{self.name} answered without a token list: {data[:200]!r}")
        return tokens

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._conn is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = kind(self._host, self._port, timeout=self.timeout_s)
        return self._conn

    def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):  # a kept-alive connection the server has closed is opened again, once
            conn = self._connect()
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, OSError) as exc:
                self.close()
                if attempt == 2:
                    raise TokenizerUnavailable(f"{self.name}: {exc}") from exc
        raise AssertionError("unreachable")


def server_tokenizer(urls: Iterable[str], model: str) -> ServerTokenizer:
    """The first of `urls` whose /tokenize counts a probe text for `model`.

    Raises TokenizerUnavailable naming what each server answered.
    """
    tried = []
    for url in dict.fromkeys(u.rstrip("/") for u in urls if u):
        try:
            tok = ServerTokenizer(url, model)
        except TokenizerUnavailable as exc:
            tried.append(str(exc))
            continue
        try:
            tok.encode(PROBE_TEXT)
        except TokenizerUnavailable as exc:
            tok.close()
            tried.append(str(exc))
            continue
        return tok
    said = "; ".join(tried or ["no URL given"])
    raise TokenizerUnavailable(f"no server answered POST /tokenize ({said})")
