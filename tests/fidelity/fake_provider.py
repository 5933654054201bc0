"""A fake LLM provider API on loopback: OpenAI (chat completions, streaming, embeddings, Azure paths),
Anthropic (messages), AWS Bedrock (Converse) and Vertex AI (Gemini generateContent), answering with fixed
usage so a test knows every token count a call really used.

Standard library only: the Python scenarios run it in-process (`serve()`); for the Node scenario the test
serves it (`python -m tests.fidelity.fake_provider PORTFILE` serves one until killed, for a person). A
model whose name starts with `fail` gets an HTTP 400 error, as a provider refuses a bad request. It also
answers as a plain-HTTP proxy (requests naming an absolute URL), so a client can address a provider's
real host name — an Azure OpenAI resource's — without that name resolving anywhere.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# The usage every call reports (what the provider bills). OpenAI counts cached tokens inside
# prompt_tokens and reasoning tokens inside completion_tokens; Anthropic's input_tokens leaves cache
# reads and writes out.
OPENAI_CHAT_USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 400, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 100, "audio_tokens": 0},
}
OPENAI_EMBEDDING_USAGE = {"prompt_tokens": 8, "total_tokens": 8}
ANTHROPIC_USAGE = {
    "input_tokens": 500,
    "cache_read_input_tokens": 700,
    "cache_creation_input_tokens": 300,
    "output_tokens": 200,
}
# Bedrock's Converse API: inputTokens leaves cache reads and writes out, as Anthropic's input_tokens does.
BEDROCK_USAGE = {
    "inputTokens": 1500,
    "outputTokens": 200,
    "totalTokens": 2700,
    "cacheReadInputTokens": 700,
    "cacheWriteInputTokens": 300,
}
# Gemini (Vertex AI's generateContent): promptTokenCount includes the cached tokens; thoughtsTokenCount
# (reasoning) is not part of candidatesTokenCount.
GEMINI_USAGE = {
    "promptTokenCount": 1200,
    "candidatesTokenCount": 200,
    "thoughtsTokenCount": 100,
    "cachedContentTokenCount": 400,
    "totalTokenCount": 1500,
}
# What a model name in a request is answered as (the dated snapshot the provider serves).
RESPONSE_MODELS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "support-gpt4o": "gpt-4o-2024-11-20",  # an Azure deployment name
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
}


def _chat_response(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": RESPONSE_MODELS.get(model, model),
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris is the capital of France.", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": OPENAI_CHAT_USAGE,
    }


def _chat_chunks(model: str, include_usage: bool) -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-fake2", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": RESPONSE_MODELS.get(model, model), "system_fingerprint": "fp_fake"}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {"content": "Paris."}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    if include_usage:
        chunks.append({**base, "choices": [], "usage": OPENAI_CHAT_USAGE})
    return chunks


def _anthropic_response(model: str) -> dict[str, Any]:
    return {
        "id": "msg_fake1",
        "type": "message",
        "role": "assistant",
        "model": RESPONSE_MODELS.get(model, model),
        "content": [{"type": "text", "text": "Paris is the capital of France."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": ANTHROPIC_USAGE,
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        path = self.path.split("?", 1)[0]
        model = request.get("model") or path.split("/deployments/", 1)[-1].split("/model/", 1)[-1].split("/", 1)[0]
        if model.startswith("fail"):
            if path.endswith("/messages"):
                error = {"type": "invalid_request_error", "message": f"model {model} does not exist"}
                self._send(400, {"type": "error", "error": error})
            else:
                error = {"message": f"The model `{model}` does not exist", "type": "invalid_request_error",
                         "param": "model", "code": "model_not_found"}
                self._send(400, {"error": error})
            return
        if path.endswith("/chat/completions"):
            if request.get("stream"):
                include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
                self._stream(_chat_chunks(model, include_usage))
            else:
                self._send(200, _chat_response(model))
        elif path.endswith("/embeddings"):
            inputs = request.get("input")
            count = len(inputs) if isinstance(inputs, list) else 1
            data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(count)]
            self._send(200, {"object": "list", "data": data, "model": model, "usage": OPENAI_EMBEDDING_USAGE})
        elif path.endswith("/messages"):
            self._send(200, _anthropic_response(model))
        elif path.endswith(":generateContent"):  # Vertex AI / Gemini: POST .../models/{model}:generateContent
            content = {"role": "model", "parts": [{"text": "Paris is the capital of France."}]}
            model = path.rsplit("/", 1)[-1].split(":", 1)[0]
            self._send(200, {"candidates": [{"content": content, "finishReason": "STOP"}],
                             "usageMetadata": GEMINI_USAGE, "modelVersion": RESPONSE_MODELS.get(model, model)})
        elif path.endswith("/converse"):  # Bedrock: POST /model/{modelId}/converse
            message = {"role": "assistant", "content": [{"text": "Paris is the capital of France."}]}
            self._send(200, {"output": {"message": message}, "stopReason": "end_turn", "usage": BEDROCK_USAGE,
                             "metrics": {"latencyMs": 120}})
        else:
            self._send(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def _stream(self, chunks: list[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in [*(f"data: {json.dumps(c)}\n\n" for c in chunks), "data: [DONE]\n\n"]:
            data = chunk.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")


def serve() -> tuple[ThreadingHTTPServer, str]:
    """Start the fake provider on a free loopback port; returns (server, base URL)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


if __name__ == "__main__":  # python -m tests.fidelity.fake_provider PORTFILE: serve until killed
    server, url = serve()
    Path(sys.argv[1]).write_text(url)
    threading.Event().wait()
