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

import orjson

PROVIDER_KEYS = (
    "gen_ai.provider.name",
    "gen_ai.system",
    "llm.provider",  # OpenInference: the host (azure, aws, google), which decides the price
    "llm.system",  # OpenInference: the product (openai, anthropic)
    "ai.model.provider",  # Vercel AI SDK: openai.chat, amazon-bedrock, google.vertex.chat, …
)
REQUEST_MODEL_KEYS = (
    "gen_ai.request.model",
    "llm.request.model_name",
    "llm.model_name",
    "embedding.model_name",  # OpenInference EMBEDDING spans
    "reranker.model_name",  # OpenInference RERANKER spans
    "llm.request.model",
    "ai.model.id",  # Vercel AI SDK
)
RESPONSE_MODEL_KEYS = ("gen_ai.response.model", "llm.response.model_name", "llm.response.model", "ai.response.model")
OPERATION_KEYS = ("gen_ai.operation.name",)
INPUT_TOKEN_KEYS = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "llm.usage.prompt_tokens",
    "ai.usage.inputTokens",  # AI SDK 5+
    "ai.usage.promptTokens",  # AI SDK 3-4
    "ai.usage.tokens",  # AI SDK embeddings
)
OUTPUT_TOKEN_KEYS = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "llm.usage.completion_tokens",
    "ai.usage.outputTokens",
    "ai.usage.completionTokens",
)
TOTAL_TOKEN_KEYS = (
    "gen_ai.usage.total_tokens",
    "llm.usage.total_tokens",
    "llm.token_count.total",
    "ai.usage.totalTokens",
)
CACHE_READ_KEYS = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",  # OpenLLMetry
    "llm.token_count.prompt_details.cache_read",  # OpenInference
    "gen_ai.usage.details.cache_read_tokens",  # pydantic-ai
    "ai.usage.cachedInputTokens",  # AI SDK 5
    "ai.usage.inputTokenDetails.cacheReadTokens",  # AI SDK 6
)
CACHE_CREATION_KEYS = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
    "gen_ai.usage.details.cache_write_tokens",
    "ai.usage.inputTokenDetails.cacheWriteTokens",
)
REASONING_KEYS = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",  # OpenLLMetry
    "llm.token_count.completion_details.reasoning",
    "gen_ai.usage.details.reasoning_tokens",
    "ai.usage.reasoningTokens",
    "ai.usage.outputTokenDetails.reasoningTokens",
)
# Costs the instrumentation computed itself (OpenInference, OpenLIT, pydantic-ai); preferred over our
# price table, except a zero cost on a call that used tokens: instrumentations report 0 for models they
# cannot price (OpenLIT), and unpriced is not free.
INPUT_COST_KEYS = ("llm.cost.prompt", "gen_ai.usage.input_cost")
OUTPUT_COST_KEYS = ("llm.cost.completion", "gen_ai.usage.output_cost")
TOTAL_COST_KEYS = ("llm.cost.total", "gen_ai.usage.cost", "gen_ai.usage.total_cost", "operation.cost")
USER_KEYS = ("user.id", "enduser.id", "gen_ai.user.id", "langfuse.user.id", "traceloop.association.properties.user_id")
SESSION_KEYS = (
    "session.id",
    "gen_ai.conversation.id",
    "langfuse.session.id",
    "traceloop.association.properties.session_id",
)
TAG_KEYS = ("tag.tags", "langfuse.trace.tags", "tags")
FINISH_REASON_KEYS = (
    "gen_ai.response.finish_reasons",
    "llm.response.finish_reason",
    "llm.finish_reason",
    "ai.response.finishReason",
    "gen_ai.completion.0.finish_reason",  # OpenLLMetry before the GenAI names
)
ENVIRONMENT_KEYS = ("deployment.environment.name", "deployment.environment")
# OpenInference: request parameters as one JSON object; read for the model when no model key is set.
INVOCATION_PARAMETERS_KEY = "llm.invocation_parameters"
INVOCATION_MODEL_FIELDS = ("model", "model_name", "model_id", "modelId", "deployment_name")

# One provider name per vendor, as the GenAI conventions list them (gen_ai.provider.name values).
# Instrumentations spell vendors many ways; a value not listed is looked up again without its last
# `.part` (the AI SDK's `openai.chat`, `google.vertex.chat`), and kept lower-cased if nothing matches.
PROVIDER_ALIASES: dict[str, str] = {
    alias: name
    for name, aliases in {
        "openai": ("openai", "open_ai", "openai_chat"),
        "anthropic": ("anthropic", "claude"),
        "azure.ai.openai": (
            "azure.ai.openai", "az.ai.openai", "azure", "azure_openai", "azure-openai", "azureopenai", "azure.openai",
        ),
        "azure.ai.inference": ("azure.ai.inference", "az.ai.inference", "azure_ai_inference", "azure-ai-inference"),
        "aws.bedrock": (
            "aws.bedrock", "aws", "bedrock", "aws_bedrock", "aws-bedrock", "amazon-bedrock", "amazon_bedrock",
            "amazon", "bedrock-runtime", "bedrock_converse",
        ),
        "gcp.vertex_ai": (
            "gcp.vertex_ai", "vertex_ai", "vertexai", "vertex", "google_vertexai", "google.vertex", "google-vertex",
            "google-vertex-ai", "vertex-ai",
        ),
        "gcp.gemini": (
            "gcp.gemini", "gemini", "google", "google_genai", "google.genai", "google-genai", "google_generativeai",
            "google.generative-ai", "google-gla", "google_ai_studio",
        ),
        "gcp.gen_ai": ("gcp.gen_ai",),
        "mistral_ai": ("mistral_ai", "mistral", "mistralai"),
        "x_ai": ("x_ai", "xai", "x-ai", "grok"),
        "cohere": ("cohere",),
        "groq": ("groq",),
        "deepseek": ("deepseek",),
        "perplexity": ("perplexity",),
        "ibm.watsonx.ai": ("ibm.watsonx.ai", "watsonx", "watsonx.ai", "ibm", "ibm_watsonx"),
    }.items()
    for alias in aliases
}
# The OpenAI SDK pointed at Azure OpenAI: most instrumentations still name the provider `openai`, but
# Azure prices its deployments differently. Such a span is `azure.ai.openai` when the request's host
# (`server.address`: OTel GenAI, OpenLIT; `gen_ai.openai.api_base`: OpenLLMetry) is under one of
# Azure's API domains, or when it carries `gen_ai.openai.api_version` (OpenLLMetry; only Azure clients
# send an api-version). OpenInference names Azure itself (`llm.provider = azure`, from the same hosts).
AZURE_OPENAI_HOST_SUFFIXES = (".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com")
AZURE_HOST_KEYS = ("server.address", "gen_ai.openai.api_base")
AZURE_API_VERSION_KEY = "gen_ai.openai.api_version"
# Frameworks some instrumentations put where the provider goes (LangSmith: gen_ai.system = "langchain"
# on every run): not a provider, so their chain, prompt and tool spans do not count as LLM calls.
NOT_PROVIDERS = frozenset({"langchain", "langgraph", "llama_index", "llamaindex", "crewai", "haystack", "dspy"})

# When no gen_ai.operation.name is given, the instrumentation's own span kind says what the call was.
REQUEST_TYPE_KEY = "llm.request.type"  # OpenLLMetry
OPENINFERENCE_KIND_KEY = "openinference.span.kind"
TRACELOOP_KIND_KEY = "traceloop.span.kind"
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
# Vercel AI SDK `ai.operationId` -> (operation, whether the span is one model call). The outer spans
# (ai.generateText, …) repeat the totals of the calls under them: their ai.* model and usage
# attributes are not read, so a call is counted once.
AI_SDK_OPERATIONS: dict[str, tuple[str, bool]] = {
    "ai.generateText.doGenerate": ("chat", True),
    "ai.streamText.doStream": ("chat", True),
    "ai.generateObject.doGenerate": ("chat", True),
    "ai.streamObject.doStream": ("chat", True),
    "ai.embed.doEmbed": ("embeddings", True),
    "ai.embedMany.doEmbed": ("embeddings", True),
    "ai.toolCall": ("execute_tool", False),
    "ai.generateText": ("invoke_workflow", False),
    "ai.streamText": ("invoke_workflow", False),
    "ai.generateObject": ("invoke_workflow", False),
    "ai.streamObject": ("invoke_workflow", False),
    "ai.embed": ("invoke_workflow", False),
    "ai.embedMany": ("invoke_workflow", False),
}
AI_SDK_OPERATION_KEY = "ai.operationId"

# Instrumentations whose input token count leaves cache reads and writes out (Anthropic's own
# `input_tokens` meaning), by instrumentation scope name prefix -> providers it applies to. The
# receiver adds the cache counts back, so `input_tokens` has one meaning whatever the source. Counts
# that cannot be inclusive (cache reads + writes above the input count) are treated the same way.
INPUT_EXCLUDES_CACHE: dict[str, frozenset[str]] = {
    "openlit.instrumentation.anthropic": frozenset(),  # gen_ai.usage.input_tokens = Anthropic's input_tokens
    "openlit.instrumentation.bedrock": frozenset(),  # = Bedrock Converse's inputTokens
    "opentelemetry.instrumentation.bedrock": frozenset(),  # OpenLLMetry: the same
}
# Instrumentations whose output token count leaves reasoning out (Gemini's candidatesTokenCount, without
# thoughtsTokenCount), by scope name prefix: the receiver adds the reasoning tokens back, so
# `output_tokens` includes reasoning whatever the source.
OUTPUT_EXCLUDES_REASONING: tuple[str, ...] = ("openlit.instrumentation.google_ai_studio",)

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
    + (
        REQUEST_TYPE_KEY,
        OPENINFERENCE_KIND_KEY,
        TRACELOOP_KIND_KEY,
        AI_SDK_OPERATION_KEY,
        INVOCATION_PARAMETERS_KEY,
        AZURE_API_VERSION_KEY,
    )
    + AZURE_HOST_KEYS
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


# Provider spellings seen -> their one name (bounded): a span's provider is one dict lookup.
_PROVIDER_NAMES: dict[str, str | None] = {}
_PROVIDER_NAMES_LIMIT = 4096


def normalize_provider(value: Any) -> str | None:
    """One provider name per vendor (PROVIDER_ALIASES), whatever the instrumentation's spelling."""
    if type(value) is str:
        try:
            return _PROVIDER_NAMES[value]
        except KeyError:
            name = _provider_name(value)
            if len(_PROVIDER_NAMES) < _PROVIDER_NAMES_LIMIT:
                _PROVIDER_NAMES[value] = name
            return name
    text = as_text(value)
    return None if text is None else _provider_name(text)


def _provider_name(text: str) -> str | None:
    name = text.strip().lower()
    if name in NOT_PROVIDERS:
        return None
    found = PROVIDER_ALIASES.get(name)
    if found is not None:
        return found
    trimmed = name
    while "." in trimmed:
        trimmed = trimmed.rsplit(".", 1)[0]
        found = PROVIDER_ALIASES.get(trimmed)
        if found is not None:
            return found
    return name or None


# server.address / api base values seen -> whether they are an Azure OpenAI host (bounded).
_AZURE_HOSTS: dict[str, bool] = {}


def _azure_host(value: str) -> bool:
    try:
        return _AZURE_HOSTS[value]
    except KeyError:
        host = value.split("//", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].lower()
        azure = host.endswith(AZURE_OPENAI_HOST_SUFFIXES)
        if len(_AZURE_HOSTS) < _PROVIDER_NAMES_LIMIT:
            _AZURE_HOSTS[value] = azure
        return azure


def is_azure_openai(attrs: dict[str, Any]) -> bool:
    """Whether a span naming provider `openai` was a request to Azure OpenAI (the rule above)."""
    if attrs.get(AZURE_API_VERSION_KEY) is not None:
        return True
    for key in AZURE_HOST_KEYS:
        value = attrs.get(key)
        if type(value) is str and value and _azure_host(value):
            return True
    return False


def provider_of(attrs: dict[str, Any]) -> str | None:
    """The span's provider, one name per vendor, Azure OpenAI told apart from OpenAI."""
    provider = normalize_provider(first(attrs, PROVIDER_KEYS))
    if provider == "openai" and is_azure_openai(attrs):
        return "azure.ai.openai"
    return provider


def ai_sdk_operation(attrs: dict[str, Any]) -> tuple[str, bool] | None:
    """(operation, is one model call) of a Vercel AI SDK span, or None for other spans."""
    op_id = attrs.get(AI_SDK_OPERATION_KEY)
    if not isinstance(op_id, str):
        return None
    return AI_SDK_OPERATIONS.get(op_id, (op_id, False))


def operation_of(attrs: dict[str, Any], ai_sdk: tuple[str, bool] | None = None) -> str | None:
    op = as_text(first(attrs, OPERATION_KEYS))
    if op:
        return op
    if ai_sdk is not None:
        return ai_sdk[0]
    request_type = attrs.get(REQUEST_TYPE_KEY)
    if isinstance(request_type, str) and request_type:
        return OPENLLMETRY_REQUEST_TYPES.get(request_type.lower(), request_type.lower())
    kind = attrs.get(OPENINFERENCE_KIND_KEY)
    if isinstance(kind, str) and kind:
        return OPENINFERENCE_KINDS.get(kind.upper(), kind.lower())
    kind = attrs.get(TRACELOOP_KIND_KEY)
    if isinstance(kind, str) and kind:
        return TRACELOOP_KINDS.get(kind.lower(), kind.lower())
    return None


def invocation_model(attrs: dict[str, Any]) -> str | None:
    """The model named in OpenInference's llm.invocation_parameters JSON, if any."""
    raw = attrs.get(INVOCATION_PARAMETERS_KEY)
    if not isinstance(raw, str) or not raw.startswith("{"):
        return None
    try:
        params = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(params, dict):
        return None
    for key in INVOCATION_MODEL_FIELDS:
        model = params.get(key)
        if isinstance(model, str) and model:
            return model
    return None


def _without_ai_sdk(attrs: dict[str, Any]) -> dict[str, Any]:
    """An AI SDK outer span's attributes minus its ai.* ones (totals of the calls under it)."""
    return {k: v for k, v in attrs.items() if not k.startswith("ai.")}


# The key groups extract_llm_fields reads by preference order, and for every key its (group, rank): a span's
# attributes are matched against them in one pass (only the keys present cost anything), not by probing
# every name of every group — most groups are absent from most spans.
_GROUPS: tuple[tuple[str, ...], ...] = (
    PROVIDER_KEYS,
    REQUEST_MODEL_KEYS,
    RESPONSE_MODEL_KEYS,
    INPUT_TOKEN_KEYS,
    OUTPUT_TOKEN_KEYS,
    TOTAL_TOKEN_KEYS,
    CACHE_READ_KEYS,
    CACHE_CREATION_KEYS,
    REASONING_KEYS,
    INPUT_COST_KEYS,
    OUTPUT_COST_KEYS,
    TOTAL_COST_KEYS,
    USER_KEYS,
    SESSION_KEYS,
    TAG_KEYS,
    FINISH_REASON_KEYS,
)
(
    _PROVIDER,
    _REQUEST_MODEL,
    _RESPONSE_MODEL,
    _INPUT,
    _OUTPUT,
    _TOTAL,
    _CACHE_READ,
    _CACHE_CREATION,
    _REASONING,
    _INPUT_COST,
    _OUTPUT_COST,
    _TOTAL_COST,
    _USER,
    _SESSION,
    _TAGS,
    _FINISH,
) = range(len(_GROUPS))
_RANK: dict[str, tuple[int, int]] = {key: (g, rank) for g, keys in enumerate(_GROUPS) for rank, key in enumerate(keys)}
assert len(_RANK) == sum(map(len, _GROUPS)), "a key belongs to one group"
_GROUPED_KEYS = frozenset(_RANK)


def _best_keys(attrs: dict[str, Any]) -> tuple[dict[int, str], set[int]]:
    """group -> its most preferred key present with a value; and the groups with more than one such key
    (where a value that does not convert falls back to the next key, as `first_count` does)."""
    best: dict[int, str] = {}
    crowded: set[int] = set()
    for key in _GROUPED_KEYS.intersection(attrs):
        if attrs[key] is None:
            continue
        group, rank = _RANK[key]
        other = best.get(group)
        if other is None:
            best[group] = key
        else:
            crowded.add(group)
            if rank < _RANK[other][1]:
                best[group] = key
    return best, crowded


def native_rule_tables() -> dict[str, Any]:
    """The tables above, as the native rules (receiver/convert/_genai_rules.c, LlmRules) take them: one rule
    table, executed by extract_llm_fields here and by the C code on the native trace path."""
    return {
        "rank": dict(_RANK),
        "groups": _GROUPS,
        "aliases": dict(PROVIDER_ALIASES),
        "not_providers": NOT_PROVIDERS,
        "azure_suffixes": AZURE_OPENAI_HOST_SUFFIXES,
        "azure_host_keys": AZURE_HOST_KEYS,
        "azure_version_key": AZURE_API_VERSION_KEY,
        "operation_keys": OPERATION_KEYS,
        "request_type_key": REQUEST_TYPE_KEY,
        "request_types": dict(OPENLLMETRY_REQUEST_TYPES),
        "openinference_key": OPENINFERENCE_KIND_KEY,
        "openinference_kinds": dict(OPENINFERENCE_KINDS),
        "traceloop_key": TRACELOOP_KIND_KEY,
        "traceloop_kinds": dict(TRACELOOP_KINDS),
        "ai_sdk_key": AI_SDK_OPERATION_KEY,
        "invocation_key": INVOCATION_PARAMETERS_KEY,
        "input_excludes": tuple(INPUT_EXCLUDES_CACHE.items()),
        "output_excludes": OUTPUT_EXCLUDES_REASONING,
        "environment_keys": ENVIRONMENT_KEYS,
    }


def _count(attrs: dict[str, Any], best: dict[int, str], crowded: set[int], group: int) -> int | None:
    key = best.get(group)
    if key is None:
        return None
    count = as_count(attrs[key])
    if count is None and group in crowded:
        return first_count(attrs, _GROUPS[group])
    return count


def _money(attrs: dict[str, Any], best: dict[int, str], crowded: set[int], group: int) -> Decimal | None:
    key = best.get(group)
    if key is None:
        return None
    money = as_money(attrs[key])
    if money is None and group in crowded:
        return first_money(attrs, _GROUPS[group])
    return money


def extract_llm_fields(attrs: dict[str, Any], scope_name: str | None = None) -> LlmFields:
    """Read the LLM columns out of one span's attribute dict (already cleaned and capped).

    `scope_name` (the instrumentation scope) says how to read counts whose meaning differs by source
    (INPUT_EXCLUDES_CACHE). The first name of a group present wins (`first`, `first_count`)."""
    fields = LlmFields()
    ai_sdk = ai_sdk_operation(attrs) if AI_SDK_OPERATION_KEY in attrs else None
    if ai_sdk is not None and not ai_sdk[1]:
        attrs = _without_ai_sdk(attrs)
    best, crowded = _best_keys(attrs)
    if not best and ai_sdk is None and INVOCATION_PARAMETERS_KEY not in attrs:
        fields.operation = operation_of(attrs)
        return fields
    key = best.get(_PROVIDER)
    provider = normalize_provider(attrs[key]) if key is not None else None
    if provider == "openai" and is_azure_openai(attrs):
        provider = "azure.ai.openai"
    fields.provider = provider
    key = best.get(_REQUEST_MODEL)
    fields.request_model = as_text(attrs[key]) if key is not None else None
    if fields.request_model is None and INVOCATION_PARAMETERS_KEY in attrs:
        fields.request_model = invocation_model(attrs)
    key = best.get(_RESPONSE_MODEL)
    fields.response_model = as_text(attrs[key]) if key is not None else None
    fields.operation = operation_of(attrs, ai_sdk)
    input_tokens = _count(attrs, best, crowded, _INPUT)
    output_tokens = fields.output_tokens = _count(attrs, best, crowded, _OUTPUT)
    cache_read = _count(attrs, best, crowded, _CACHE_READ) if _CACHE_READ in best else None
    cache_creation = _count(attrs, best, crowded, _CACHE_CREATION) if _CACHE_CREATION in best else None
    if (cache_read or cache_creation) and input_tokens is not None:
        cached = (cache_read or 0) + (cache_creation or 0)
        if cached > input_tokens or _input_excludes_cache(scope_name, provider):
            input_tokens += cached
    fields.input_tokens = input_tokens
    total = _count(attrs, best, crowded, _TOTAL) if _TOTAL in best else None
    if input_tokens is not None or output_tokens is not None:
        summed = (input_tokens or 0) + (output_tokens or 0)
        if total is None or total < summed:  # a total without the cache counts added back
            total = summed
    fields.total_tokens = total
    fields.cache_read_tokens = cache_read
    fields.cache_creation_tokens = cache_creation
    if _REASONING in best:
        fields.reasoning_tokens = _count(attrs, best, crowded, _REASONING)
        if output_tokens is not None and _output_excludes_reasoning(scope_name) and fields.reasoning_tokens:
            fields.output_tokens = output_tokens + fields.reasoning_tokens
            fields.total_tokens = max(total or 0, (input_tokens or 0) + fields.output_tokens)
    if _INPUT_COST in best:
        fields.input_cost = _money(attrs, best, crowded, _INPUT_COST)
    if _OUTPUT_COST in best:
        fields.output_cost = _money(attrs, best, crowded, _OUTPUT_COST)
    if _TOTAL_COST in best:
        fields.total_cost = _money(attrs, best, crowded, _TOTAL_COST)
    if _USER in best:
        fields.user_id = as_key(attrs[best[_USER]])
    if _SESSION in best:
        fields.session_id = as_key(attrs[best[_SESSION]])
    if _TAGS in best:
        fields.tags = as_text_list(attrs[best[_TAGS]])
    if _FINISH in best:
        fields.finish_reasons = as_text_list(attrs[best[_FINISH]])
    return fields


def _output_excludes_reasoning(scope_name: str | None) -> bool:
    return scope_name is not None and scope_name.startswith(OUTPUT_EXCLUDES_REASONING)


def _input_excludes_cache(scope_name: str | None, provider: str | None) -> bool:
    if not scope_name or not INPUT_EXCLUDES_CACHE:
        return False
    for prefix, providers in INPUT_EXCLUDES_CACHE.items():
        if scope_name.startswith(prefix) and (not providers or provider in providers):
            return True
    return False


def provider_and_model(attrs: dict[str, Any]) -> tuple[str | None, str | None]:
    """Provider (one name per vendor) and model named by one attribute dict, by the same names spans use.

    Metric points and log records carry fewer attributes than spans; their resource is the fallback,
    which the caller applies with `or` so the point's own value always wins.
    """
    provider = provider_of(attrs)
    model = as_text(first(attrs, RESPONSE_MODEL_KEYS)) or as_text(first(attrs, REQUEST_MODEL_KEYS))
    return provider, model


# Every attribute provider_and_model reads. The native logs and metrics decoder hands it a dict of only
# these (receiver.convert.logs_metrics_bytes); tests/test_native_signals.py checks it reads no other.
PROVIDER_MODEL_KEYS: tuple[str, ...] = (
    *PROVIDER_KEYS,
    AZURE_API_VERSION_KEY,
    *AZURE_HOST_KEYS,
    *RESPONSE_MODEL_KEYS,
    *REQUEST_MODEL_KEYS,
)
