"""The GenAI rules in C (LlmRules, receiver/convert/_genai_rules.c) against genai.py, their reference.

The native rules execute genai.py's tables and answer only where they are certain; elsewhere they say
"don't know" (None) and the span takes extract_llm_fields. So two things are checked on generated
attribute sets that reach every key of every group with values of every type: where C answers, every
field equals extract_llm_fields' (value and type); and C does answer for the spans real instrumentations
send, so the fast path is not a fallback in disguise. Then whole rows: requests of such spans through
convert_traces_bytes (native rules, pricing, fallbacks) against the pure converter, column by column.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from receiver.convert import genai, traces_bytes
from receiver.convert.traces_bytes import NATIVE_STATUS, native_rules
from tests.support.differential import OPTIONS, assert_same

RULES = native_rules()
pytestmark = pytest.mark.skipif(RULES is None, reason=NATIVE_STATUS)

FIELDS = (
    "provider",
    "request_model",
    "response_model",
    "operation",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "user_id",
    "session_id",
    "tags",
    "finish_reasons",
)
GROUP_KEYS = [key for group in genai._GROUPS for key in group]
OTHER_RULE_KEYS = sorted(genai.LLM_ATTRIBUTE_KEYS - set(GROUP_KEYS)) + list(genai.ENVIRONMENT_KEYS)
PROVIDERS = [
    *genai.PROVIDER_ALIASES,
    *genai.NOT_PROVIDERS,
    "OpenAI",
    " Anthropic ",
    "openai.chat",
    "google.vertex.chat",
    "amazon-bedrock.converse.x",
    "azure.openai.responses",
    "Mistral",
    "unknown.vendor",
    "\x1fopenai\x1c",
    "",
    " ",
    ".",
    "a..b.",
    "OPENAİ",
    "ＯpenAI",
]
HOSTS = [
    "my.openai.azure.com",
    "https://x.openai.azure.com/openai/deployments/a",
    "X.COGNITIVESERVICES.AZURE.COM:443",
    "https://h.services.ai.azure.com:8443/",
    "api.openai.com",
    "https://api.openai.com/v1",
    "openai.azure.com",
    "a:b:c",
    "//x.openai.azure.com",
    "",
    "ｘ.openai.azure.com",
]
SCOPES = [
    None,
    "",
    "openlit.instrumentation.anthropic",
    "openlit.instrumentation.bedrock.x",
    "opentelemetry.instrumentation.bedrock",
    "openlit.instrumentation.google_ai_studio",
    "openlit.instrumentation.google_ai_studio.v2",
    "opentelemetry.instrumentation.openai",
    "openlit",
]
KINDS = [
    *genai.OPENLLMETRY_REQUEST_TYPES,
    *genai.OPENINFERENCE_KINDS,
    *genai.TRACELOOP_KINDS,
    "LLM",
    "llm",
    "Chat",
    "custom_kind",
    "",
    "Émbed",
    *genai.AI_SDK_OPERATIONS,
]
COUNT_TEXTS = ["12", " 12 ", "+7", "-3", "-0", "0", "1_000", "1 2", "", " ", "+", "12a", "\t9\n", "\x1c5\x1f", "٣"]
COUNT_TEXTS += ["9" * 18, "9" * 19, "1e3", "0x10", "1.0", "n/a"]
COUNTS = [0, 1, 7, 1000, -1, -(2**63), 2**60 - 1, 2**60, 2**62 - 1, 2**62, 2**63 - 1]
FLOATS = [0.0, -0.0, 7.0, 12.5, -3.0, 1e15, 2.0**60, 2.0**62, 1e300, 0.1]


class AttributeSets:
    """Attribute dicts as the decoder hands them to the rules: keys the rules read, values of every type."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def scalar(self) -> Any:
        rng = self.rng
        kind = rng.randrange(12)
        if kind == 0:
            return rng.choice(COUNTS)
        if kind == 1:
            return rng.choice(FLOATS)
        if kind == 2:
            return rng.random() < 0.5
        if kind == 3:
            return rng.choice(COUNT_TEXTS)
        if kind == 4:
            return rng.choice(PROVIDERS)
        if kind == 5:
            return rng.choice(HOSTS)
        if kind == 6:
            return rng.choice(KINDS)
        if kind == 7:
            return rng.choice(("gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "o1", "u" * rng.choice((128, 129, 200))))
        if kind == 8:
            return None
        if kind == 9:
            return "NaN"
        if kind == 10:
            return "é" * rng.randint(0, 3)
        return str(rng.randint(0, 10**6))

    def value(self) -> Any:
        rng = self.rng
        pick = rng.random()
        if pick < 0.1:
            return [self.scalar() for _ in range(rng.randint(0, 3))]
        if pick < 0.13:
            return {"k": self.scalar()}
        return self.scalar()

    def attrs(self) -> dict[str, Any]:
        rng = self.rng
        out: dict[str, Any] = {}
        for _ in range(rng.randint(0, 9)):
            pick = rng.random()
            if pick < 0.6:
                key = rng.choice(GROUP_KEYS)
            elif pick < 0.9:
                key = rng.choice(OTHER_RULE_KEYS)
            else:
                key = rng.choice(("a", "gen_ai.other"))
            out[key] = self.value()
        return out

    def typical(self) -> dict[str, Any]:
        """A span as an instrumentation sends it: one key per group, plain values."""
        rng = self.rng
        out: dict[str, Any] = {
            rng.choice(genai.PROVIDER_KEYS): rng.choice(("openai", "anthropic", "OpenAI", "aws", "openai.chat")),
            rng.choice(genai.REQUEST_MODEL_KEYS): rng.choice(("gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "o1")),
            rng.choice(genai.INPUT_TOKEN_KEYS): rng.randint(0, 5000),
            rng.choice(genai.OUTPUT_TOKEN_KEYS): rng.choice((rng.randint(0, 900), str(rng.randint(0, 900)))),
        }
        if rng.random() < 0.5:
            out[rng.choice(genai.RESPONSE_MODEL_KEYS)] = "gpt-4o-2024-08-06"
        if rng.random() < 0.5:
            out["gen_ai.operation.name"] = "chat"
        else:
            out[rng.choice((genai.REQUEST_TYPE_KEY, genai.OPENINFERENCE_KIND_KEY))] = rng.choice(("chat", "LLM"))
        if rng.random() < 0.3:
            out[rng.choice(genai.CACHE_READ_KEYS)] = rng.randint(0, 3000)
        if rng.random() < 0.3:
            out[rng.choice(genai.REASONING_KEYS)] = rng.randint(0, 300)
        if rng.random() < 0.5:
            out[rng.choice(genai.USER_KEYS)] = f"user-{rng.randint(0, 99)}"
            out[rng.choice(genai.SESSION_KEYS)] = f"session-{rng.randint(0, 99)}"
        if rng.random() < 0.5:
            out[rng.choice(genai.FINISH_REASON_KEYS)] = rng.choice((["stop"], "length", ["stop", "tool_calls"]))
        if rng.random() < 0.3:
            out["server.address"] = rng.choice([host for host in HOSTS if host.isascii()])
        if rng.random() < 0.3:
            out["deployment.environment.name"] = "prod"
        return out


def expected_fields(attrs: dict[str, Any], scope: str | None) -> tuple[Any, ...]:
    fields = genai.extract_llm_fields(attrs, scope)
    return tuple(getattr(fields, name) for name in FIELDS)


def assert_same_fields(attrs: dict[str, Any], scope: str | None) -> bool:
    """C and genai.py agree on `attrs` (or C declines); True when C answered."""
    actual = RULES.extract(attrs, scope)
    if actual is None:
        return False
    reference = genai.extract_llm_fields(attrs, scope)
    assert (reference.input_cost, reference.output_cost, reference.total_cost) == (None, None, None), attrs
    expected = tuple(getattr(reference, name) for name in FIELDS)
    for name, a, e in zip(FIELDS, actual, expected, strict=True):
        assert a == e and type(a) is type(e), f"{name}: C {a!r}, genai.py {e!r} for {attrs!r} (scope {scope!r})"
        if isinstance(e, list):
            assert [type(x) for x in a] == [type(x) for x in e], (name, attrs)
    return True


def test_generated_attribute_sets_give_the_same_fields_or_fall_back():
    rng = random.Random(17)
    sets = AttributeSets(rng)
    answered = total = 0
    for _ in range(20000):
        attrs = sets.attrs()
        answered += assert_same_fields(attrs, rng.choice(SCOPES))
        total += 1
    # The generator's reach: C answers most sets (and so is compared on them), declines some.
    assert total * 0.5 < answered < total, (answered, total)


def test_typical_instrumentation_spans_never_fall_back_and_agree():
    rng = random.Random(18)
    sets = AttributeSets(rng)
    for _ in range(3000):
        attrs = sets.typical()
        scope = rng.choice(SCOPES)
        assert assert_same_fields(attrs, scope), f"fell back on a typical span: {attrs!r}"


@pytest.mark.parametrize(
    "attrs, scope",
    [
        # Crowded groups: the best key's value is no count, the next key's is (first_count).
        ({"gen_ai.usage.input_tokens": "n/a", "llm.token_count.prompt": 12, "gen_ai.usage.output_tokens": 3}, None),
        ({"gen_ai.usage.input_tokens": [1], "gen_ai.usage.prompt_tokens": 7.0, "llm.usage.prompt_tokens": 9}, None),
        ({"gen_ai.usage.output_tokens": True, "ai.usage.outputTokens": " 4 "}, None),
        # Cache counts added back: by scope, and when they cannot be inclusive.
        ({"gen_ai.usage.input_tokens": 10, "gen_ai.usage.cache_read.input_tokens": 90}, None),
        (
            {"gen_ai.system": "anthropic", "gen_ai.usage.input_tokens": 100, "gen_ai.usage.cache_read_input_tokens": 5},
            "openlit.instrumentation.anthropic",
        ),
        (
            {"gen_ai.usage.output_tokens": 10, "gen_ai.usage.reasoning_tokens": 4, "gen_ai.usage.total_tokens": 11},
            "openlit.instrumentation.google_ai_studio",
        ),
        # Providers: aliases, dotted suffixes, frameworks that are no provider, Azure by host and version.
        ({"ai.model.provider": "google.vertex.chat"}, None),
        ({"gen_ai.system": "LangChain", "gen_ai.request.model": "gpt-4o"}, None),
        ({"gen_ai.system": "openai", "gen_ai.openai.api_base": "https://r.openai.azure.com/"}, None),
        ({"gen_ai.system": "openai", "gen_ai.openai.api_version": "2024-06-01"}, None),
        ({"gen_ai.system": 42, "llm.system": "openai"}, None),
        # Operation from the instrumentation's span kind.
        ({"openinference.span.kind": "retriever"}, None),
        ({"traceloop.span.kind": "Workflow", "gen_ai.operation.name": ""}, None),
        ({"gen_ai.operation.name": ["chat"], "llm.request.type": "Completion"}, None),
        # Text values of other types; ids; tags.
        ({"gen_ai.request.model": 4, "gen_ai.response.model": 2.5, "user.id": True, "tag.tags": ["a", None, 3]}, None),
    ],
)
def test_hand_written_cases_agree_and_are_answered_natively(attrs, scope):
    assert assert_same_fields(attrs, scope)


@pytest.mark.parametrize(
    "attrs",
    [
        {"ai.operationId": "ai.generateText", "ai.usage.promptTokens": 3},
        {"ai.operationId": None, "gen_ai.usage.input_tokens": 3},
        {"llm.invocation_parameters": '{"model": "gpt-4o"}'},
        {"llm.cost.total": 0.5, "gen_ai.usage.input_tokens": 3},
        {"gen_ai.usage.input_tokens": "1_000"},
        {"gen_ai.usage.input_tokens": 2**61},
        {"gen_ai.system": "OPENAİ"},
        {"user.id": "u" * 129},
        {"gen_ai.system": "openai", "server.address": "ｘ.openai.azure.com"},
    ],
)
def test_what_the_native_rules_leave_to_python(attrs):
    assert RULES.extract(attrs, None) is None


def test_every_key_of_every_group_is_read_natively():
    """Each key alone, with a value of each kind, answered by C and equal to genai.py."""
    for key in GROUP_KEYS:
        if key in genai.INPUT_COST_KEYS + genai.OUTPUT_COST_KEYS + genai.TOTAL_COST_KEYS:
            assert RULES.extract({key: 1}, None) is None
            continue
        for value in ("gpt-4o", 12, 12.0, " 12 ", True, ["a", 1], "openai.chat"):
            assert assert_same_fields({key: value}, None), (key, value)


def _any_value(value: Any) -> common_pb2.AnyValue:
    if value is None:
        return common_pb2.AnyValue()
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=max(-(2**63), min(2**63 - 1, value)))
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    if isinstance(value, list):
        return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[_any_value(v) for v in value]))
    if isinstance(value, dict):
        pairs = [common_pb2.KeyValue(key=k, value=_any_value(v)) for k, v in value.items()]
        return common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(values=pairs))
    return common_pb2.AnyValue(string_value=value)


def _request(rng: random.Random, sets: AttributeSets, spans: int) -> bytes:
    scopes = []
    for _ in range(rng.randint(1, 3)):
        batch = []
        for _ in range(spans):
            attrs = sets.typical() if rng.random() < 0.6 else sets.attrs()
            if rng.random() < 0.1:
                attrs[rng.choice(genai.TOTAL_COST_KEYS)] = rng.choice((0, 0.25, "0.1"))
            start = 1_763_000_000_000_000_000 + rng.getrandbits(40)
            batch.append(
                trace_pb2.Span(
                    trace_id=rng.randbytes(16),
                    span_id=rng.randbytes(8),
                    name="chat",
                    start_time_unix_nano=start,
                    end_time_unix_nano=start + rng.randint(0, 10**10),
                    attributes=[common_pb2.KeyValue(key=k, value=_any_value(v)) for k, v in attrs.items()],
                )
            )
        scope = rng.choice(SCOPES) or ""
        scopes.append(
            trace_pb2.ScopeSpans(scope=common_pb2.InstrumentationScope(name=scope), spans=batch)
        )
    resource_attrs = [common_pb2.KeyValue(key="service.name", value=_any_value("svc"))]
    if rng.random() < 0.5:
        resource_attrs.append(common_pb2.KeyValue(key="deployment.environment", value=_any_value("staging")))
    resource = resource_pb2.Resource(attributes=resource_attrs)
    message = ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(resource=resource, scope_spans=scopes)]
    )
    return message.SerializeToString()


def test_rows_of_genai_requests_equal_the_pure_converters(monkeypatch):
    """Whole rows: native rules, pricing (priced and unpriced models, costs the span states) and fallbacks."""
    rng = random.Random(19)
    sets = AttributeSets(rng)
    fallbacks = []
    python_row = traces_bytes._python_row
    monkeypatch.setattr(traces_bytes, "_python_row", lambda *args: fallbacks.append(1) or python_row(*args))
    rows = 0
    for options in (OPTIONS, dataclasses.replace(OPTIONS, native_rules=False)):
        for _ in range(60):
            converted = assert_same(_request(rng, sets, 20), options)
            assert converted is not None and converted.rows
            rows += len(converted.rows) if options.native_rules else 0
    # Most rows were made in C, some by the fallback (both compared above).
    assert 0 < len(fallbacks) < rows * 0.4, (len(fallbacks), rows)
