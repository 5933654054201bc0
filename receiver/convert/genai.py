"""LLM semantic conventions: which attribute names mean provider, model, tokens, cost, user, session.

Instrumentations disagree on names. We read, in order of preference, the current OpenTelemetry GenAI
names, their deprecated predecessors (still emitted by many SDKs), OpenInference (Arize) and
OpenLLMetry (Traceloop). The first name present wins; the tables below are the whole rule.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.system", "llm.provider")
REQUEST_MODEL_KEYS = ("gen_ai.request.model", "llm.request.model_name", "llm.model_name", "llm.request.model")
RESPONSE_MODEL_KEYS = ("gen_ai.response.model", "llm.response.model_name", "llm.response.model")
OPERATION_KEYS = ("gen_ai.operation.name",)
INPUT_TOKEN_KEYS = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "llm.usage.prompt_tokens",
)
OUTPUT_TOKEN_KEYS = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "llm.usage.completion_tokens",
)
TOTAL_TOKEN_KEYS = ("gen_ai.usage.total_tokens", "llm.usage.total_tokens", "llm.token_count.total")
CACHE_READ_KEYS = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
)
CACHE_CREATION_KEYS = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
)
REASONING_KEYS = ("gen_ai.usage.reasoning.output_tokens", "llm.token_count.completion_details.reasoning")
# Costs the instrumentation computed itself (OpenInference, OpenLIT); preferred over our price table.
INPUT_COST_KEYS = ("llm.cost.prompt", "gen_ai.usage.input_cost")
OUTPUT_COST_KEYS = ("llm.cost.completion", "gen_ai.usage.output_cost")
TOTAL_COST_KEYS = ("llm.cost.total", "gen_ai.usage.cost", "gen_ai.usage.total_cost")
USER_KEYS = ("user.id", "enduser.id", "gen_ai.user.id", "langfuse.user.id", "traceloop.association.properties.user_id")
SESSION_KEYS = (
    "session.id",
    "gen_ai.conversation.id",
    "langfuse.session.id",
    "traceloop.association.properties.session_id",
)
TAG_KEYS = ("tag.tags", "langfuse.trace.tags", "tags")
FINISH_REASON_KEYS = ("gen_ai.response.finish_reasons", "llm.response.finish_reason", "llm.finish_reason")
ENVIRONMENT_KEYS = ("deployment.environment.name", "deployment.environment")

# When no gen_ai.operation.name is given, the instrumentation's own span kind says what the call was.
OPENLLMETRY_REQUEST_TYPES = {
    "chat": "chat",
    "completion": "text_completion",
    "embedding": "embeddings",
    "rerank": "rerank",
}
OPENINFERENCE_KINDS = {
    "LLM": "chat",
    "EMBEDDING": "embeddings",
    "RETRIEVER": "retrieval",
    "RERANKER": "rerank",
    "TOOL": "execute_tool",
    "AGENT": "invoke_agent",
    "CHAIN": "chain",
    "GUARDRAIL": "guardrail",
    "EVALUATOR": "evaluator",
    "PROMPT": "prompt",
}
TRACELOOP_KINDS = {"workflow": "invoke_workflow", "task": "task", "agent": "invoke_agent", "tool": "execute_tool"}

# Every attribute key extract_llm_fields reads (a test keeps this in step with the code). The native
# trace converter hands Python only the attributes under these keys, so the rules stay here, in one place.
LLM_ATTRIBUTE_KEYS: frozenset[str] = frozenset(
    PROVIDER_KEYS
    + REQUEST_MODEL_KEYS
    + RESPONSE_MODEL_KEYS
    + OPERATION_KEYS
    + INPUT_TOKEN_KEYS
    + OUTPUT_TOKEN_KEYS
    + TOTAL_TOKEN_KEYS
    + CACHE_READ_KEYS
    + CACHE_CREATION_KEYS
    + REASONING_KEYS
    + INPUT_COST_KEYS
    + OUTPUT_COST_KEYS
    + TOTAL_COST_KEYS
    + USER_KEYS
    + SESSION_KEYS
    + TAG_KEYS
    + FINISH_REASON_KEYS
    + ("llm.request.type", "openinference.span.kind", "traceloop.span.kind")
)


@dataclass(slots=True)
class LlmFields:
    """What the LLM columns of one span row are made of."""

    provider: str | None = None
    request_model: str | None = None
    response_model: str | None = None
    operation: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None
    input_cost: Decimal | None = None
    output_cost: Decimal | None = None
    total_cost: Decimal | None = None
    user_id: str | None = None
    session_id: str | None = None
    tags: list[str] | None = None
    finish_reasons: list[str] | None = None

    @property
    def model(self) -> str | None:
        """The model that answered when known, else the one asked for."""
        return self.response_model or self.request_model


def first(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None:
            return value
    return None


def as_text(value: Any) -> str | None:
    if value is None or isinstance(value, (list, dict)):
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


KEY_MAX_BYTES = 512  # user and session ids are btree keys (a btree entry over ~2.7 KB fails its batch)


def as_key(value: Any) -> str | None:
    """An id that an index keys on: text, at most KEY_MAX_BYTES of UTF-8. A longer one (no real user or
    session id is) keeps its start and gets a hash of the whole value, so two long ids stay distinct;
    the value as sent is still in `attributes`."""
    text = as_text(value)
    if text is None or len(text) * 4 <= KEY_MAX_BYTES:
        return text
    raw = text.encode()
    if len(raw) <= KEY_MAX_BYTES:
        return text
    digest = hashlib.md5(raw).hexdigest()[:16]  # not for security: two long ids stay apart
    head = raw[: KEY_MAX_BYTES - len(digest) - 4].decode("utf-8", "ignore")
    return f"{head}…#{digest}"


def as_count(value: Any) -> int | None:
    """Token counts arrive as ints, floats or strings depending on the SDK; keep whole, sane ones."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        count = value
    elif isinstance(value, float):
        if not value.is_integer():
            return None
        count = int(value)
    elif isinstance(value, str):
        try:
            count = int(value.strip())
        except ValueError:
            return None
    else:
        return None
    return count if 0 <= count < 1 << 62 else None


def as_money(value: Any) -> Decimal | None:
    """A cost attribute -> exact Decimal. Floats go through their shortest repr, not their binary value."""
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, float):
            money = Decimal(repr(value))
        elif isinstance(value, (int, str)):
            money = Decimal(value)
        else:
            return None
    except (InvalidOperation, ValueError):
        return None
    return money if money.is_finite() and money >= 0 else None


def as_text_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        items = [as_text(v) for v in value]
        texts = [v for v in items if v is not None]
        return texts or None
    text = as_text(value)
    return [text] if text is not None else None


def first_count(attrs: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = attrs.get(key)
        if value is not None:
            count = as_count(value)
            if count is not None:
                return count
    return None


def first_money(attrs: dict[str, Any], keys: tuple[str, ...]) -> Decimal | None:
    for key in keys:
        value = attrs.get(key)
        if value is not None:
            money = as_money(value)
            if money is not None:
                return money
    return None


def operation_of(attrs: dict[str, Any]) -> str | None:
    op = as_text(first(attrs, OPERATION_KEYS))
    if op:
        return op
    request_type = attrs.get("llm.request.type")
    if isinstance(request_type, str) and request_type:
        return OPENLLMETRY_REQUEST_TYPES.get(request_type.lower(), request_type.lower())
    kind = attrs.get("openinference.span.kind")
    if isinstance(kind, str) and kind:
        return OPENINFERENCE_KINDS.get(kind.upper(), kind.lower())
    kind = attrs.get("traceloop.span.kind")
    if isinstance(kind, str) and kind:
        return TRACELOOP_KINDS.get(kind.lower(), kind.lower())
    return None


def extract_llm_fields(attrs: dict[str, Any]) -> LlmFields:
    """Read the LLM columns out of one span's attribute dict (already cleaned and capped)."""
    fields = LlmFields()
    provider = as_text(first(attrs, PROVIDER_KEYS))
    fields.provider = provider.lower() if provider else None
    fields.request_model = as_text(first(attrs, REQUEST_MODEL_KEYS))
    fields.response_model = as_text(first(attrs, RESPONSE_MODEL_KEYS))
    fields.operation = operation_of(attrs)
    fields.input_tokens = first_count(attrs, INPUT_TOKEN_KEYS)
    fields.output_tokens = first_count(attrs, OUTPUT_TOKEN_KEYS)
    total = first_count(attrs, TOTAL_TOKEN_KEYS)
    if total is None and (fields.input_tokens is not None or fields.output_tokens is not None):
        total = (fields.input_tokens or 0) + (fields.output_tokens or 0)
    fields.total_tokens = total
    fields.cache_read_tokens = first_count(attrs, CACHE_READ_KEYS)
    fields.cache_creation_tokens = first_count(attrs, CACHE_CREATION_KEYS)
    fields.reasoning_tokens = first_count(attrs, REASONING_KEYS)
    fields.input_cost = first_money(attrs, INPUT_COST_KEYS)
    fields.output_cost = first_money(attrs, OUTPUT_COST_KEYS)
    fields.total_cost = first_money(attrs, TOTAL_COST_KEYS)
    fields.user_id = as_key(first(attrs, USER_KEYS))
    fields.session_id = as_key(first(attrs, SESSION_KEYS))
    fields.tags = as_text_list(first(attrs, TAG_KEYS))
    fields.finish_reasons = as_text_list(first(attrs, FINISH_REASON_KEYS))
    return fields


def provider_and_model(attrs: dict[str, Any]) -> tuple[str | None, str | None]:
    """Provider (lower-cased) and model named by one attribute dict, by the same names spans use.

    Metric points and log records carry fewer attributes than spans; their resource is the fallback,
    which the caller applies with `or` so the point's own value always wins.
    """
    provider = as_text(first(attrs, PROVIDER_KEYS))
    model = as_text(first(attrs, RESPONSE_MODEL_KEYS)) or as_text(first(attrs, REQUEST_MODEL_KEYS))
    return (provider.lower() if provider else None), model
