"""GenAI attribute sets for the differential tests of the native GenAI rules (LlmRules, _genai_rules.c):
tests/test_native_rules.py and the `rules` fuzz target.

Attribute dicts as the trace decoder hands them to the rules: the keys the rules read (every key of every
group, the kind, host and AI SDK keys, the environment), with values of every type the decoder makes
(str, int, float, bool, list, dict, None) and the spellings that decide a rule: provider aliases with
dotted suffixes and odd case or spaces, frameworks that are no provider, Azure hosts with schemes, paths
and ports, count strings with signs, spaces, underscores and non-ASCII digits, counts at 2^60 and 2^62,
integral and non-integral floats, long ids.
"""

from __future__ import annotations

import random
from typing import Any

from receiver.convert import genai
from receiver.convert.traces_bytes import native_rules

RULES = native_rules()

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
    """Attribute dicts as the decoder hands them to the rules: keys the rules read, values of every type
    (and `texts`, e.g. from a fuzzer's bytes, among the strings)."""

    def __init__(self, rng: random.Random, texts: tuple[str, ...] = ()) -> None:
        self.rng = rng
        self.texts = texts

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
            return rng.choice(self.texts) if self.texts else "é" * rng.randint(0, 3)
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
    assert RULES is not None
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


