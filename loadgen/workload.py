"""Realistic LLM telemetry: the traces (and correlated log records) one exporter batch would carry.

What real LLM applications send, in proportions an operator can change:
  chat        an HTTP server span with one chat-completion client span under it (2 spans)
  embeddings  one embeddings call (1 span)
  tool        a tool-calling turn: chat (finish_reason tool_calls) -> execute_tool -> chat (4 spans)
  agent       invoke_agent with 2-5 chat calls, 1-3 tool calls, sometimes a retrieval embedding (4-10)
  genai       one chat client span with exactly 17 attributes, a quarter with a prompt event (1 span,
              ~810 B on the wire): issue 17's "~760-byte, 17-attribute GenAI span mix". Always in the
              current conventions. Not in the default mix (the default workload's figures must stay
              comparable); `--mix genai=100` sends nothing else.
Attribute names follow the current OpenTelemetry GenAI conventions, except for a share of traces
(`legacy_share`) written the way older or other instrumentations write them: deprecated GenAI names,
OpenInference (Arize) and OpenLLMetry (Traceloop) — the receiver must map them all to the same columns.
A share of LLM spans carry large prompts and completions (`large_share`, `large_bytes`), a share end
in an error status with an exception event (`error_rate`), and every trace has user / session ids.

Keys have the cardinalities of an LLM product, because the database's cost per row depends on them
(an index over a key with few values behaves nothing like one over many):
  users     Zipf-distributed (exponent `user_skew`, 1.0) over a population of `users` (5,000): the top
            user makes ~11% of the traces, the top ten ~32%, and the long tail is thousands strong. The
            `hot_users` head has fixed ids; tail ids carry a placeholder that rotates among
            `USER_ROTATIONS` values with each pass over the pool, so the run sees thousands of
            distinct users, not the few hundred a pool holds.
  sessions  a conversation lasts `session_turns` traces (6: tens of spans), then a new one starts: the
            session id carries a placeholder that advances every `session_turns` passes over the pool,
            so session ids never stop being new, as in production.
  services  4 applications x 16 instances; models weighted, a few of them hot (CHAT_MODELS).
Span times follow the clock: bodies are built once, and each send shifts every timestamp in them by
the time elapsed since (bodies.Template), so a long run spreads its spans over its whole duration.

Requests hold whole traces (a trace never spans two requests: its id is patched per request) and
exactly `batch_spans` spans: traces are added while the largest shape still fits, single-span traces
fill the rest (chat or embeddings; genai spans when genai is the only shape with a weight). Everything
is drawn from a seeded `random.Random`, so a seed reproduces a pool exactly. This runs before the
clock starts; its speed matters little, its realism a lot.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from .ids import SESSION_SLOT, USER_SLOT, RunId, random_id_bytes

# genai last, with no weight by default: rng.choices draws the same shapes from the same numbers with a
# trailing zero weight, so the default pool stays byte-identical for a given seed.
SHAPES = ("chat", "embeddings", "tool", "agent", "genai")
DEFAULT_MIX = {"chat": 45.0, "embeddings": 15.0, "tool": 15.0, "agent": 25.0}
MAX_TRACE_SPANS = 10  # the agent shape at most
LEGACY_FAMILIES = ("deprecated", "openinference", "openllmetry")
APPS = ("support-bot", "rag-search", "agent-runner", "batch-embedder")

# (provider, request model, response model, weight); the receiver's default prices (genai-prices) resolve
# all but mistral-small (unknown to genai-prices 0.2.3: stored unpriced).
CHAT_MODELS: tuple[tuple[str, str, str, float], ...] = (
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 30),
    ("openai", "gpt-4o", "gpt-4o-2024-08-06", 15),
    ("openai", "gpt-4.1-mini", "gpt-4.1-mini-2025-04-14", 8),
    ("openai", "gpt-5-mini", "gpt-5-mini-2025-08-07", 5),
    ("openai", "o4-mini", "o4-mini-2025-04-16", 2),
    ("anthropic", "claude-sonnet-4", "claude-sonnet-4-20250514", 18),
    ("anthropic", "claude-3-5-haiku", "claude-3-5-haiku-20241022", 8),
    ("gcp.gemini", "gemini-2.5-flash", "gemini-2.5-flash", 10),
    ("mistral_ai", "mistral-small", "mistral-small-2503", 4),
)
EMBEDDING_MODELS = (("openai", "text-embedding-3-small", 4), ("openai", "text-embedding-3-large", 1))
SERVERS = {
    "openai": "api.openai.com",
    "anthropic": "api.anthropic.com",
    "gcp.gemini": "generativelanguage.googleapis.com",
    "mistral_ai": "api.mistral.ai",
}
TRACELOOP_SYSTEMS = {"openai": "OpenAI", "anthropic": "Anthropic", "gcp.gemini": "Gemini", "mistral_ai": "MistralAI"}
REASONING_MODELS = frozenset({"o4-mini", "gpt-5-mini"})
TOOLS = (
    ("get_weather", "Current weather for a city", '{"city": "Lisbon", "unit": "C"}', '{"temp": 21, "sky": "clear"}'),
    ("search_orders", "Find a customer's orders", '{"customer_id": "c-4411", "status": "open"}', '[{"id": "o-98"}]'),
    ("lookup_docs", "Search the product docs", '{"query": "reset password", "k": 5}', '{"hits": 5}'),
    ("create_ticket", "Open a support ticket", '{"priority": "high", "summary": "refund"}', '{"ticket": "T-1207"}'),
    ("run_sql", "Run a read-only SQL query", '{"sql": "select count(*) from users"}', '{"rows": [[1842]]}'),
)
AGENTS = ("support-agent", "research-agent", "billing-agent", "triage-agent")
ERRORS = (
    ("RateLimitError", "Error code: 429 - Rate limit reached for requests"),
    ("APITimeoutError", "Request timed out."),
    ("InternalServerError", "Error code: 500 - The server had an error while processing your request"),
    ("BadRequestError", "Error code: 400 - This model's maximum context length is 128000 tokens"),
)
SCOPES = {
    "current": ("opentelemetry.instrumentation.openai_v2", "2.1b0"),
    "deprecated": ("opentelemetry.instrumentation.openai_v2", "2.0b0"),
    "openinference": ("openinference.instrumentation.openai", "0.1.30"),
    "openllmetry": ("opentelemetry.instrumentation.openai", "0.40.14"),
    "http": ("opentelemetry.instrumentation.fastapi", "0.55b0"),
}
_TEXT = (
    "the customer asked about order status refund policy shipping delay account password reset invoice "
    "please summarize this document and list the key points with sources model answer context retrieved "
    "from knowledge base according to our records your request has been escalated to a human agent who "
    "will contact you within one business day thank you for your patience we apologize for the trouble"
)
_WORDS = _TEXT.split()

SERVER, CLIENT, INTERNAL = (
    trace_pb2.Span.SPAN_KIND_SERVER,
    trace_pb2.Span.SPAN_KIND_CLIENT,
    trace_pb2.Span.SPAN_KIND_INTERNAL,
)


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """What one request looks like; every field is a command-line option."""

    batch_spans: int = 512
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    legacy_share: float = 0.3
    large_share: float = 0.05
    large_bytes: int = 16384
    error_rate: float = 0.02
    log_ratio: float = 0.5  # log records per span (when logs are sent)
    with_logs: bool = False
    users: int = 5000  # user population (Zipf-distributed)
    user_skew: float = 1.0  # Zipf exponent: larger = hotter head
    hot_users: int = 20  # the head of the distribution keeps fixed ids; the tail rotates
    session_turns: int = 6  # traces per conversation before its session id changes


@dataclass(slots=True)
class BuiltRequest:
    """One pool entry before serialization. Trace ids hold the k placeholder (ids.SLOT)."""

    traces: trace_service_pb2.ExportTraceServiceRequest
    logs: logs_service_pb2.ExportLogsServiceRequest | None
    span_keys: list[tuple[bytes, str]]  # (template part of the trace id, span id hex), in body order
    log_records: int
    series: set[tuple[str, str, str]]  # (provider, model, operation) of the LLM spans, for metrics
    resource: resource_pb2.Resource


def kv(key: str, value: object) -> common_pb2.KeyValue:
    if isinstance(value, bool):
        any_value = common_pb2.AnyValue(bool_value=value)
    elif isinstance(value, int):
        any_value = common_pb2.AnyValue(int_value=value)
    elif isinstance(value, float):
        any_value = common_pb2.AnyValue(double_value=value)
    elif isinstance(value, list | tuple):
        any_value = common_pb2.AnyValue(
            array_value=common_pb2.ArrayValue(values=[common_pb2.AnyValue(string_value=str(v)) for v in value])
        )
    else:
        any_value = common_pb2.AnyValue(string_value=str(value))
    return common_pb2.KeyValue(key=key, value=any_value)


def _attributes(pairs: dict[str, object]) -> list[common_pb2.KeyValue]:
    return [kv(k, v) for k, v in pairs.items() if v is not None]


def resource_for(run: RunId, app: str, instance: int) -> resource_pb2.Resource:
    """The resource of one application instance; the run id is in service.name and loadgen.run_id."""
    return resource_pb2.Resource(
        attributes=_attributes(
            {
                "service.name": f"{app}-{run.text}",
                "service.version": "1.4.2",
                "service.instance.id": f"{app}-{instance}",
                "deployment.environment.name": "production" if instance % 4 else "staging",
                "host.name": f"ip-10-0-{instance % 8}-{17 + instance}",
                "telemetry.sdk.name": "opentelemetry",
                "telemetry.sdk.language": "python",
                "telemetry.sdk.version": "1.38.0",
                "loadgen.run_id": run.text,
            }
        )
    )


class _Trace:
    """Spans and log records of one trace under construction."""

    def __init__(self, builder: RequestBuilder, family: str) -> None:
        self.b = builder
        self.family = family
        self.middle = random_id_bytes(builder.rng, 8)
        self.trace_id = builder.run.template_trace_id(self.middle)
        self.user = builder.user_id()
        self.session = f"sess-{builder.rng.randrange(1 << 32):08x}-{SESSION_SLOT.decode()}"
        self.spans: list[tuple[str, trace_pb2.Span]] = []  # (scope key, span)
        self.logs: list[logs_pb2.LogRecord] = []

    def add(
        self,
        scope: str,
        name: str,
        kind: int,
        start_ns: int,
        duration_ns: int,
        attrs: dict[str, object],
        parent: bytes = b"",
        error: tuple[str, str] | None = None,
        log_body: str | None = None,
    ) -> bytes:
        rng = self.b.rng
        span_id = random_id_bytes(rng, 8)
        span = trace_pb2.Span(
            trace_id=self.trace_id,
            span_id=span_id,
            parent_span_id=parent,
            name=name,
            kind=kind,  # type: ignore[arg-type]
            start_time_unix_nano=start_ns,
            end_time_unix_nano=start_ns + duration_ns,
            attributes=_attributes(attrs),
            flags=0x100,  # "is the parent remote" is known: it is not
        )
        if error is not None:
            error_type, message = error
            span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
            span.status.message = message
            span.attributes.append(kv("error.type", error_type))
            span.events.append(
                trace_pb2.Span.Event(
                    name="exception",
                    time_unix_nano=start_ns + duration_ns,
                    attributes=_attributes(
                        {
                            "exception.type": f"openai.{error_type}",
                            "exception.message": message,
                            "exception.stacktrace": self.b.stacktrace,
                        }
                    ),
                )
            )
        elif kind == CLIENT and rng.random() < 0.3:
            span.status.code = trace_pb2.Status.STATUS_CODE_OK
        self.spans.append((scope, span))
        if self.b.spec.with_logs and rng.random() < self.b.spec.log_ratio:
            self._log(span, error, log_body)
        return span_id

    def _log(self, span: trace_pb2.Span, error: tuple[str, str] | None, body: str | None) -> None:
        end = span.end_time_unix_nano
        record = logs_pb2.LogRecord(
            time_unix_nano=end,
            observed_time_unix_nano=end + 1_500_000,
            trace_id=span.trace_id,
            span_id=span.span_id,
            flags=1,
        )
        if error is not None:
            record.severity_number = logs_pb2.SEVERITY_NUMBER_ERROR
            record.severity_text = "ERROR"
            record.body.string_value = f"{span.name} failed: {error[1]}"
            record.attributes.extend(_attributes({"error.type": error[0], "code.function": "create"}))
        elif body is not None:  # an LLM call: the GenAI inference-details event
            record.severity_number = logs_pb2.SEVERITY_NUMBER_INFO
            record.event_name = "gen_ai.client.inference.operation.details"
            record.body.kvlist_value.values.extend(_attributes({"gen_ai.output.messages": body}))
            record.attributes.extend(
                [kv for kv in span.attributes if kv.key in ("gen_ai.operation.name", "gen_ai.request.model")]
            )
        else:
            record.severity_number = logs_pb2.SEVERITY_NUMBER_INFO
            record.severity_text = "INFO"
            record.body.string_value = f"{span.name} completed in {(end - span.start_time_unix_nano) // 1_000_000} ms"
        self.logs.append(record)


class RequestBuilder:
    """Builds pool entries: one per call of `build`, each with exactly `spec.batch_spans` spans."""

    def __init__(self, spec: WorkloadSpec, run: RunId, seed: int, base_ns: int) -> None:
        self.spec = spec
        self.run = run
        self.rng = random.Random(seed)
        self.base_ns = base_ns  # traces start in the minute before this
        weights = [max(0.0, spec.mix.get(shape, 0.0)) for shape in SHAPES]
        if not any(weights):
            raise ValueError("the workload mix gives every trace shape a weight of 0")
        self._shape_weights = weights
        # What fills a request past the last whole trace: a genai-only mix stays pure genai spans.
        only_genai = all(w == 0 for shape, w in zip(SHAPES, weights, strict=True) if shape != "genai")
        self._fill = self._genai_trace if only_genai else self._single
        self._chat_weights = [m[3] for m in CHAT_MODELS]
        if spec.users < 1:
            raise ValueError("the user population must hold at least one user")
        self._user_cumulative = list(itertools.accumulate((r + 1) ** -spec.user_skew for r in range(spec.users)))
        corpus_rng = random.Random(seed ^ 0x5EED)
        self.corpus = " ".join(corpus_rng.choice(_WORDS) for _ in range(60_000))  # ~400 KB of text
        self.stacktrace = "Traceback (most recent call last):\n" + "".join(
            f'  File "/app/llm/client.py", line {100 + i}, in call_{i}\n    return self._post(...)\n' for i in range(12)
        )

    def user_id(self) -> str:
        """A Zipf-distributed user: the head's ids are fixed, the tail's carry the rotation placeholder."""
        total = self._user_cumulative[-1]
        rank = min(bisect.bisect_left(self._user_cumulative, self.rng.random() * total), self.spec.users - 1)
        if rank < self.spec.hot_users:
            return f"user-{rank:05d}"
        return f"user-{rank:05d}-{USER_SLOT.decode()}"

    # -- text -------------------------------------------------------------------------------------

    def text(self, nbytes: int) -> str:
        start = self.rng.randrange(0, len(self.corpus) - nbytes - 1) if nbytes < len(self.corpus) - 2 else 0
        return self.corpus[start : start + nbytes]

    def _sizes(self) -> tuple[int, int, bool]:
        """(prompt bytes, completion bytes, large?) of one LLM call."""
        rng = self.rng
        if rng.random() < self.spec.large_share:
            big = self.spec.large_bytes
            return big * 3 // 4, big // 4, True
        return rng.randint(200, 1500), rng.randint(80, 600), False

    def _error(self) -> tuple[str, str] | None:
        return self.rng.choice(ERRORS) if self.rng.random() < self.spec.error_rate else None

    # -- spans ------------------------------------------------------------------------------------

    def _chat(
        self, t: _Trace, start: int, parent: bytes, finish: str = "stop", model: tuple[str, str, str] | None = None
    ) -> tuple[int, tuple[str, str, str]]:
        """One chat-completion client span; returns (duration ns, (provider, request model, response model))."""
        rng = self.rng
        provider, req_model, resp_model = model or rng.choices(CHAT_MODELS, self._chat_weights)[0][:3]
        prompt_bytes, completion_bytes, large = self._sizes()
        input_tokens = prompt_bytes // 4 + rng.randint(20, 200)
        error = self._error()
        output_tokens = 0 if error else completion_bytes // 4 + rng.randint(5, 60)
        duration = rng.randint(250, 900) * 1_000_000 + output_tokens * rng.randint(8, 25) * 1_000
        prompt = self.text(prompt_bytes)
        completion = None if error else self.text(completion_bytes)
        temperature = rng.choice((0.0, 0.2, 0.7, 1.0))
        max_tokens = rng.choice((256, 1024, 4096))
        response_id = f"chatcmpl-{rng.getrandbits(64):016x}"
        family = t.family
        a: dict[str, object]
        if family == "current":
            input_messages = orjson.dumps(
                [
                    {"role": "system", "parts": [{"type": "text", "content": "You are a helpful support assistant."}]},
                    {"role": "user", "parts": [{"type": "text", "content": prompt}]},
                ]
            ).decode()
            output_messages = (
                None
                if completion is None
                else orjson.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "text", "content": completion}],
                            "finish_reason": finish,
                        }
                    ]
                ).decode()
            )
            a = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": req_model,
                "gen_ai.response.model": None if error else resp_model,
                "gen_ai.request.temperature": temperature,
                "gen_ai.request.max_tokens": max_tokens,
                "gen_ai.request.top_p": 1.0 if rng.random() < 0.3 else None,
                "gen_ai.response.id": None if error else response_id,
                "gen_ai.response.finish_reasons": None if error else [finish],
                "gen_ai.output.type": "text",
                "gen_ai.usage.input_tokens": input_tokens,
                "gen_ai.usage.output_tokens": output_tokens,
                "gen_ai.usage.cache_read.input_tokens": input_tokens // 2 if rng.random() < 0.3 else None,
                "gen_ai.usage.reasoning.output_tokens": output_tokens // 3 if req_model in REASONING_MODELS else None,
                "gen_ai.conversation.id": t.session,
                "server.address": SERVERS[provider],
                "server.port": 443,
                "user.id": t.user,
                "session.id": t.session,
                "gen_ai.input.messages": input_messages,
                "gen_ai.output.messages": output_messages,
            }
        elif family == "deprecated":
            a = {
                "gen_ai.operation.name": "chat",
                "gen_ai.system": provider,
                "gen_ai.request.model": req_model,
                "gen_ai.response.model": None if error else resp_model,
                "gen_ai.request.temperature": temperature,
                "gen_ai.request.max_tokens": max_tokens,
                "gen_ai.response.id": None if error else response_id,
                "gen_ai.response.finish_reasons": None if error else [finish],
                "gen_ai.usage.prompt_tokens": input_tokens,
                "gen_ai.usage.completion_tokens": output_tokens,
                "gen_ai.openai.request.seed": 42 if provider == "openai" and rng.random() < 0.2 else None,
                "server.address": SERVERS[provider],
                "enduser.id": t.user,
                "session.id": t.session,
                "gen_ai.prompt": prompt,
                "gen_ai.completion": completion,
            }
        elif family == "openinference":
            a = {
                "openinference.span.kind": "LLM",
                "llm.system": provider.split(".")[-1] if provider != "mistral_ai" else "mistralai",
                "llm.provider": provider.split(".")[0],
                "llm.model_name": resp_model if not error else req_model,
                "llm.invocation_parameters": orjson.dumps(
                    {"temperature": temperature, "max_tokens": max_tokens}
                ).decode(),
                "llm.token_count.prompt": input_tokens,
                "llm.token_count.completion": output_tokens,
                "llm.token_count.total": input_tokens + output_tokens,
                "llm.input_messages.0.message.role": "system",
                "llm.input_messages.0.message.content": "You are a helpful support assistant.",
                "llm.input_messages.1.message.role": "user",
                "llm.input_messages.1.message.content": prompt,
                "llm.output_messages.0.message.role": None if error else "assistant",
                "llm.output_messages.0.message.content": completion,
                "input.value": prompt[:200],
                "input.mime_type": "text/plain",
                "output.value": None if completion is None else completion[:200],
                "user.id": t.user,
                "session.id": t.session,
                "metadata": orjson.dumps({"large": large}).decode(),
            }
        else:  # openllmetry
            a = {
                "llm.request.type": "chat",
                "gen_ai.system": TRACELOOP_SYSTEMS[provider],
                "gen_ai.request.model": req_model,
                "gen_ai.response.model": None if error else resp_model,
                "gen_ai.request.temperature": temperature,
                "gen_ai.request.max_tokens": max_tokens,
                "llm.is_streaming": rng.random() < 0.4,
                "gen_ai.usage.prompt_tokens": input_tokens,
                "gen_ai.usage.completion_tokens": output_tokens,
                "llm.usage.total_tokens": input_tokens + output_tokens,
                "gen_ai.usage.cache_read_input_tokens": input_tokens // 2 if rng.random() < 0.2 else None,
                "gen_ai.prompt.0.role": "user",
                "gen_ai.prompt.0.content": prompt,
                "gen_ai.completion.0.role": None if error else "assistant",
                "gen_ai.completion.0.content": completion,
                "gen_ai.completion.0.finish_reason": None if error else finish,
                "traceloop.association.properties.user_id": t.user,
                "traceloop.association.properties.session_id": t.session,
                "traceloop.workflow.name": "answer_question",
            }
        name = f"chat {req_model}" if family in ("current", "deprecated") else "openai.chat"
        t.add(family, name, CLIENT, start, duration, a, parent, error, log_body=completion and completion[:300])
        return duration, (provider, req_model, resp_model)

    def _embeddings(self, t: _Trace, start: int, parent: bytes) -> int:
        rng = self.rng
        provider, model, _ = rng.choices(EMBEDDING_MODELS, (4, 1))[0]
        text = self.text(rng.randint(100, 800))
        tokens = len(text) // 4
        duration = rng.randint(40, 250) * 1_000_000
        family = t.family
        if family == "current":
            a: dict[str, object] = {
                "gen_ai.operation.name": "embeddings",
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
                "gen_ai.response.model": model,
                "gen_ai.usage.input_tokens": tokens,
                "gen_ai.embeddings.dimension.count": 1536 if model.endswith("small") else 3072,
                "gen_ai.request.encoding_formats": ["float"],
                "server.address": SERVERS[provider],
                "server.port": 443,
                "user.id": t.user,
            }
        elif family == "deprecated":
            a = {
                "gen_ai.operation.name": "embeddings",
                "gen_ai.system": provider,
                "gen_ai.request.model": model,
                "gen_ai.usage.prompt_tokens": tokens,
                "enduser.id": t.user,
            }
        elif family == "openinference":
            a = {
                "openinference.span.kind": "EMBEDDING",
                "llm.system": provider,
                "llm.model_name": model,
                "embedding.model_name": model,
                "embedding.embeddings.0.embedding.text": text,
                "llm.token_count.prompt": tokens,
                "llm.token_count.total": tokens,
                "user.id": t.user,
            }
        else:
            a = {
                "llm.request.type": "embedding",
                "gen_ai.system": TRACELOOP_SYSTEMS[provider],
                "gen_ai.request.model": model,
                "gen_ai.response.model": model,
                "gen_ai.usage.prompt_tokens": tokens,
                "llm.usage.total_tokens": tokens,
                "gen_ai.prompt.0.content": text,
                "traceloop.association.properties.user_id": t.user,
            }
        name = f"embeddings {model}" if family in ("current", "deprecated") else "openai.embeddings"
        t.add(family, name, CLIENT, start, duration, a, parent, self._error())
        self._series.add((provider, model, "embeddings"))
        return duration

    def _tool(self, t: _Trace, start: int, parent: bytes) -> int:
        rng = self.rng
        name, description, arguments, result = rng.choice(TOOLS)
        duration = rng.randint(5, 400) * 1_000_000
        call_id = f"call_{rng.getrandbits(64):016x}"
        family = t.family
        if family in ("current", "deprecated"):
            a: dict[str, object] = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.description": description,
                "gen_ai.tool.type": "function",
                "gen_ai.tool.call.id": call_id,
                "gen_ai.tool.call.arguments": arguments,
                "gen_ai.tool.call.result": result,
            }
        elif family == "openinference":
            a = {
                "openinference.span.kind": "TOOL",
                "tool.name": name,
                "tool.description": description,
                "tool.parameters": arguments,
                "input.value": arguments,
                "output.value": result,
            }
        else:
            a = {
                "traceloop.span.kind": "tool",
                "traceloop.entity.name": name,
                "traceloop.entity.input": arguments,
                "traceloop.entity.output": result,
            }
        span_name = f"execute_tool {name}" if family in ("current", "deprecated") else f"{name}.tool"
        t.add(family, span_name, INTERNAL, start, duration, a, parent, self._error())
        return duration

    # -- traces -----------------------------------------------------------------------------------

    def _start(self) -> int:
        return self.base_ns - self.rng.randint(1, 60_000) * 1_000_000

    def _chat_trace(self, t: _Trace) -> None:
        rng = self.rng
        start = self._start()
        root_id = random_id_bytes(rng, 8)
        chat_start = start + rng.randint(1, 8) * 1_000_000
        duration, (provider, req_model, _) = self._chat(t, chat_start, root_id)
        self._series.add((provider, req_model, "chat"))
        total = duration + rng.randint(2, 20) * 1_000_000
        route = rng.choice(("/v1/chat", "/v1/answer", "/api/assist"))
        self._root(
            t,
            root_id,
            "http",
            f"POST {route}",
            SERVER,
            start,
            total,
            {
                "http.request.method": "POST",
                "http.route": route,
                "url.path": route,
                "url.scheme": "https",
                "http.response.status_code": 200,
                "server.address": "assistant.internal",
                "client.address": f"10.1.{rng.randrange(256)}.{rng.randrange(256)}",
                "user_agent.original": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)",
                "user.id": t.user,
            },
        )

    def _root(
        self, t: _Trace, span_id: bytes, scope: str, name: str, kind: int, start: int, duration: int, attrs: dict
    ) -> None:
        """A root span whose id was chosen before its children were built."""
        span = trace_pb2.Span(
            trace_id=t.trace_id,
            span_id=span_id,
            name=name,
            kind=kind,  # type: ignore[arg-type]
            start_time_unix_nano=start,
            end_time_unix_nano=start + duration,
            attributes=_attributes(attrs),
            flags=0x100,
        )
        t.spans.append((scope, span))
        if self.spec.with_logs and self.rng.random() < self.spec.log_ratio:
            t._log(span, None, None)

    def _tool_trace(self, t: _Trace) -> None:
        rng = self.rng
        start = self._start()
        root_id = random_id_bytes(rng, 8)
        model = rng.choices(CHAT_MODELS, self._chat_weights)[0][:3]
        cursor = start + 2_000_000
        d1, _ = self._chat(t, cursor, root_id, finish="tool_calls", model=model)
        cursor += d1 + 1_000_000
        cursor += self._tool(t, cursor, root_id) + 1_000_000
        d3, _ = self._chat(t, cursor, root_id, model=model)
        cursor += d3
        self._series.add((model[0], model[1], "chat"))
        self._root(t, root_id, t.family, "chat_with_tools", INTERNAL, start, cursor - start + 1_000_000, {})

    def _agent_trace(self, t: _Trace) -> None:
        rng = self.rng
        start = self._start()
        root_id = random_id_bytes(rng, 8)
        model = rng.choices(CHAT_MODELS, self._chat_weights)[0][:3]
        agent = rng.choice(AGENTS)
        cursor = start + 3_000_000
        if rng.random() < 0.4:
            cursor += self._embeddings(t, cursor, root_id) + 1_000_000
        chats = rng.randint(2, 5)
        tools = rng.randint(1, min(3, chats - 1))
        for step in range(chats):
            last = step == chats - 1
            d, _ = self._chat(t, cursor, root_id, finish="stop" if last else "tool_calls", model=model)
            cursor += d + 1_000_000
            if step < tools:
                cursor += self._tool(t, cursor, root_id) + 1_000_000
        self._series.add((model[0], model[1], "chat"))
        family = t.family
        if family in ("current", "deprecated"):
            a: dict[str, object] = {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": agent,
                "gen_ai.agent.id": f"asst_{agent.replace('-', '')[:10]}",
                "gen_ai.provider.name" if family == "current" else "gen_ai.system": model[0],
                "gen_ai.request.model": model[1],
                "gen_ai.conversation.id": t.session,
                "user.id": t.user,
                "session.id": t.session,
            }
            name = f"invoke_agent {agent}"
        elif family == "openinference":
            a = {
                "openinference.span.kind": "AGENT",
                "agent.name": agent,
                "input.value": self.text(200),
                "output.value": self.text(150),
                "user.id": t.user,
                "session.id": t.session,
            }
            name = agent
        else:
            a = {
                "traceloop.span.kind": "agent",
                "traceloop.entity.name": agent,
                "traceloop.workflow.name": agent,
                "traceloop.association.properties.user_id": t.user,
                "traceloop.association.properties.session_id": t.session,
            }
            name = f"{agent}.agent"
        self._root(t, root_id, family, name, INTERNAL, start, cursor - start + 2_000_000, a)

    def _genai_trace(self, t: _Trace) -> None:
        """One GenAI chat client span with a fixed set of 17 attributes (issue 17's neutral workload).

        Always in the current conventions (scope "current"), whatever `legacy_share` drew for the trace:
        this shape measures the receiver on the span the issue names, not the mapping of other names.
        The prompt is not an attribute (no gen_ai.input.messages / output.messages): one span in four
        carries it as the current conventions' event, `gen_ai.client.inference.operation.details`
        with the user's message in `gen_ai.input.messages` (the per-message `gen_ai.user.message` event
        is deprecated). An error span keeps all 17 attributes (its output tokens are 0) and gets
        error.type and the exception event as the other shapes do."""
        rng = self.rng
        provider, req_model, resp_model = rng.choices(CHAT_MODELS, self._chat_weights)[0][:3]
        start = self._start()
        error = self._error()
        input_tokens = rng.randint(40, 2400)
        output_tokens = 0 if error else rng.randint(10, 700)
        duration = rng.randint(250, 900) * 1_000_000 + output_tokens * rng.randint(8, 25) * 1_000
        attrs: dict[str, object] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": req_model,
            "gen_ai.response.model": resp_model,
            "gen_ai.request.temperature": rng.choice((0.0, 0.2, 0.7, 1.0)),
            "gen_ai.request.max_tokens": rng.choice((256, 1024, 4096)),
            "gen_ai.request.top_p": rng.choice((1.0, 0.95, 0.9)),
            "gen_ai.response.id": f"chatcmpl-{rng.getrandbits(64):016x}",
            "gen_ai.response.finish_reasons": [rng.choices(("stop", "length", "tool_calls"), (85, 5, 10))[0]],
            "gen_ai.output.type": "text",
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
            "gen_ai.conversation.id": t.session,
            "server.address": SERVERS[provider],
            "server.port": 443,
            "user.id": t.user,
            "session.id": t.session,
        }
        prompt = self.text(rng.randint(94, 194)) if rng.random() < 0.25 else None  # + 56 B of JSON
        log_body = self.text(rng.randint(80, 300)) if self.spec.with_logs and not error else None
        t.add("current", f"chat {req_model}", CLIENT, start, duration, attrs, b"", error, log_body)
        if prompt is not None:
            message = [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]
            span = t.spans[-1][1]
            span.events.insert(
                0,
                trace_pb2.Span.Event(
                    name="gen_ai.client.inference.operation.details",
                    time_unix_nano=start + rng.randint(1, 5) * 1_000_000,
                    attributes=[kv("gen_ai.input.messages", orjson.dumps(message).decode())],
                ),
            )
        self._series.add((provider, req_model, "chat"))

    def _single(self, t: _Trace) -> None:
        """A one-span trace (to fill a request up to exactly batch_spans)."""
        if self.rng.random() < 0.5:
            self._embeddings(t, self._start(), b"")
        else:
            _, (provider, model, _) = self._chat(t, self._start(), b"")
            self._series.add((provider, model, "chat"))

    def _family(self) -> str:
        rng = self.rng
        return rng.choice(LEGACY_FAMILIES) if rng.random() < self.spec.legacy_share else "current"

    def build(self, index: int) -> BuiltRequest:
        """Pool entry `index`: one application instance's batch of `batch_spans` spans."""
        self._series: set[tuple[str, str, str]] = set()
        spec = self.spec
        traces: list[_Trace] = []
        count = 0
        while spec.batch_spans - count >= MAX_TRACE_SPANS:
            t = _Trace(self, self._family())
            shape = self.rng.choices(SHAPES, self._shape_weights)[0]
            {
                "chat": self._chat_trace,
                "tool": self._tool_trace,
                "agent": self._agent_trace,
                "genai": self._genai_trace,
            }.get(shape, lambda tr: self._embeddings(tr, self._start(), b""))(t)
            traces.append(t)
            count += len(t.spans)
        while count < spec.batch_spans:
            t = _Trace(self, self._family())
            self._fill(t)
            traces.append(t)
            count += 1
        app = APPS[index % len(APPS)]
        resource = resource_for(self.run, app, index % 16)
        by_scope: dict[str, list[trace_pb2.Span]] = {}
        keys_by_scope: dict[str, list[tuple[bytes, str]]] = {}
        logs: list[logs_pb2.LogRecord] = []
        for t in traces:
            for scope, span in t.spans:
                by_scope.setdefault(scope, []).append(span)
                keys_by_scope.setdefault(scope, []).append((t.middle, span.span_id.hex()))
            logs.extend(t.logs)
        scope_spans = [
            trace_pb2.ScopeSpans(
                scope=common_pb2.InstrumentationScope(name=SCOPES[scope][0], version=SCOPES[scope][1]), spans=spans
            )
            for scope, spans in by_scope.items()
        ]
        request = trace_service_pb2.ExportTraceServiceRequest(
            resource_spans=[
                trace_pb2.ResourceSpans(
                    resource=resource, scope_spans=scope_spans, schema_url="https://opentelemetry.io/schemas/1.37.0"
                )
            ]
        )
        span_keys = [key for scope in by_scope for key in keys_by_scope[scope]]
        logs_request = None
        if spec.with_logs:
            logs_request = logs_service_pb2.ExportLogsServiceRequest(
                resource_logs=[
                    logs_pb2.ResourceLogs(
                        resource=resource,
                        scope_logs=[
                            logs_pb2.ScopeLogs(
                                scope=common_pb2.InstrumentationScope(name=f"{app}.logging", version="1.4.2"),
                                log_records=logs,
                            )
                        ],
                    )
                ]
            )
        return BuiltRequest(request, logs_request, span_keys, len(logs), self._series, resource)


def parse_mix(text: str) -> dict[str, float]:
    """'chat=45,agent=25' -> weights; shapes not named get 0."""
    mix: dict[str, float] = dict.fromkeys(SHAPES, 0.0)
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in SHAPES:
            raise ValueError(f"--mix: {part!r} is not SHAPE=WEIGHT with SHAPE one of {', '.join(SHAPES)}")
        try:
            mix[name] = float(value)
        except ValueError:
            raise ValueError(f"--mix: weight {value!r} of {name} is not a number") from None
        if mix[name] < 0:
            raise ValueError(f"--mix: weight of {name} is negative")
    if not any(mix.values()):
        raise ValueError("--mix: at least one shape needs a positive weight")
    return mix


def describe_mix(mix: dict[str, float], shapes: Sequence[str] = SHAPES) -> str:
    return ",".join(f"{s}={mix.get(s, 0):g}" for s in shapes)
