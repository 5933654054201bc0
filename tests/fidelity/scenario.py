"""Drive one instrumentation library against the fake provider and export its spans to a receiver.

Runs inside an instrumentation environment (var/fidelity/<env>, built by `make fidelity-envs`), not the
receiver's: `python -m tests.fidelity.scenario LIBRARY CALL [CALL ...]` with OTEL_EXPORTER_OTLP_ENDPOINT
(the receiver's OTLP/HTTP address) and OTEL_SERVICE_NAME set. Every call is made through the provider's
own SDK, as an application would; the instrumentation records it; the OpenTelemetry SDK exports
OTLP/protobuf to the receiver, and the process exits once everything is flushed.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fidelity.fake_provider import serve

# The calls, by name: (request model, what is done). The test knows each one's true usage.
PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


def openai_client(base: str) -> Any:
    import openai

    return openai.OpenAI(base_url=f"{base}/v1", api_key="sk-fake", max_retries=0)


def call_openai_chat(base: str) -> None:
    openai_client(base).chat.completions.create(model="gpt-4o-mini", messages=PROMPT)


def call_openai_stream(base: str) -> None:
    stream = openai_client(base).chat.completions.create(
        model="gpt-4o", messages=PROMPT, stream=True, stream_options={"include_usage": True}
    )
    for _ in stream:
        pass


def call_openai_embeddings(base: str) -> None:
    openai_client(base).embeddings.create(model="text-embedding-3-small", input="hello world")


def call_openai_error(base: str) -> None:
    import openai

    try:
        openai_client(base).chat.completions.create(model="fail-model", messages=PROMPT)
    except openai.BadRequestError:
        pass
    else:
        raise SystemExit("the fake provider did not refuse fail-model")


# An Azure OpenAI resource's endpoint. Nothing resolves it: the client sends its requests through the
# fake provider as its HTTP proxy, so the SDK and its instrumentation see the host a real Azure call has.
AZURE_ENDPOINT = "http://fidelity.openai.azure.com"


def call_azure_chat(base: str) -> None:
    import httpx
    import openai

    client = openai.AzureOpenAI(
        azure_endpoint=AZURE_ENDPOINT,
        api_key="fake",
        api_version="2024-10-21",
        max_retries=0,
        http_client=httpx.Client(proxy=base, trust_env=False),
    )
    client.chat.completions.create(model="support-gpt4o", messages=PROMPT)


def call_anthropic_chat(base: str) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=base, api_key="sk-ant-fake", max_retries=0)
    client.messages.create(model="claude-haiku-4-5", max_tokens=256, messages=PROMPT)


def call_bedrock_converse(base: str) -> None:
    """Claude on AWS Bedrock through boto3's Converse API (the endpoint is the fake provider; the
    credentials only need to sign)."""
    import boto3

    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=base,
        aws_access_key_id="AKIAFAKE",
        aws_secret_access_key="fake",
        config=boto3.session.Config(retries={"max_attempts": 1}),
    )
    client.converse(
        modelId="global.anthropic.claude-haiku-4-5-20251001-v1:0",
        messages=[{"role": "user", "content": [{"text": "What is the capital of France?"}]}],
    )


def call_vertex_gemini(base: str) -> None:
    """Gemini on Vertex AI through the google-genai SDK (a fixed access token: the fake provider checks none)."""
    from google import genai
    from google.genai.types import HttpOptions
    from google.oauth2.credentials import Credentials

    client = genai.Client(
        vertexai=True,
        project="fidelity",
        location="us-central1",
        credentials=Credentials(token="fake"),
        http_options=HttpOptions(base_url=base),
    )
    client.models.generate_content(model="gemini-2.5-flash", contents="What is the capital of France?")


def call_langchain_chain(base: str) -> None:
    """A LangChain chain: prompt -> chat model -> parser, plus a retriever and a tool (span kinds
    CHAIN, LLM, RETRIEVER, TOOL under OpenInference)."""
    from langchain_core.documents import Document
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    class Fixed(BaseRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager: Any = None) -> list[Document]:
            return [Document(page_content="Paris is the capital of France.")]

    @tool
    def capital(country: str) -> str:
        """The capital of a country."""
        return "Paris"

    llm = ChatOpenAI(model="gpt-4o-mini", base_url=f"{base}/v1", api_key="sk-fake", max_retries=0)
    chain = ChatPromptTemplate.from_messages([("user", "{question}")]) | llm | StrOutputParser()
    Fixed().invoke("capital of France")
    capital.invoke({"country": "France"})
    # A run named as an agent is an AGENT span under OpenInference; its steps stay CHAIN / LLM spans.
    chain.with_config(run_name="capital agent").invoke({"question": "What is the capital of France?"})


def call_openinference_rerank(base: str) -> None:
    """A reranking step traced with OpenInference's own API (a RERANKER span: model, query, documents;
    rerankers bill per search, so no tokens)."""
    from openinference.instrumentation import OITracer, TraceConfig, get_reranker_attributes
    from opentelemetry import trace

    tracer = OITracer(trace.get_tracer("fidelity.rerank"), config=TraceConfig())
    attributes = get_reranker_attributes(query="capital of France", model_name="rerank-v3.5", top_k=1)
    with tracer.start_as_current_span("rerank", openinference_span_kind="reranker", attributes=attributes):
        pass


def call_pydantic_ai_agent(base: str) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(base_url=f"{base}/v1", api_key="sk-fake"))
    Agent(model).run_sync("What is the capital of France?")


def call_pydantic_ai_anthropic(base: str) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.providers.anthropic import AnthropicProvider

    model = AnthropicModel("claude-haiku-4-5", provider=AnthropicProvider(base_url=base, api_key="sk-ant-fake"))
    Agent(model).run_sync("What is the capital of France?")


CALLS: dict[str, Callable[[str], None]] = {
    name.removeprefix("call_"): fn for name, fn in globals().items() if name.startswith("call_")
}


def tracer_provider() -> Any:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": os.environ["OTEL_SERVICE_NAME"]}))
    if os.environ.get("FIDELITY_DUMP"):  # for a person: print each span's name, scope and attributes
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        class Dump(InMemorySpanExporter):
            def export(self, spans: Any) -> Any:
                for span in spans:
                    print(span.name, span.instrumentation_scope.name, span.status.status_code.name,
                          {k: v for k, v in span.attributes.items() if not str(v).startswith(("[{", "{"))
                           or k == "llm.invocation_parameters"}, flush=True)
                return super().export(spans)

        provider.add_span_processor(SimpleSpanProcessor(Dump()))
    else:
        endpoint = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(_counting_exporter(endpoint)))
    trace.set_tracer_provider(provider)
    return provider


# Spans and log records (GenAI events) the receiver accepted and refused: the test waits for as many rows
# as were accepted.
EXPORTED = {"accepted": 0, "refused": 0, "events": 0}


def logger_provider() -> Any:
    """With FIDELITY_EVENTS set: a global logger provider (and event logger provider, for instrumentations
    on the older Events API) exporting the gen_ai.* events as OTLP log records to the receiver."""
    if not os.environ.get("FIDELITY_EVENTS"):
        return None
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    class Counting(OTLPLogExporter):
        def export(self, batch: Any) -> Any:
            result = super().export(batch)
            EXPORTED["events" if result.name == "SUCCESS" else "refused"] += len(batch)
            return result

    endpoint = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/logs"
    logs = LoggerProvider(resource=Resource.create({"service.name": os.environ["OTEL_SERVICE_NAME"]}))
    logs.add_log_record_processor(SimpleLogRecordProcessor(Counting(endpoint=endpoint)))
    set_logger_provider(logs)
    try:
        from opentelemetry._events import set_event_logger_provider
        from opentelemetry.sdk._events import EventLoggerProvider

        set_event_logger_provider(EventLoggerProvider(logs))
    except ImportError:  # SDKs without the Events API
        pass
    return logs


def _counting_exporter(endpoint: str) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    class Counting(OTLPSpanExporter):
        def export(self, spans: Any) -> Any:
            result = super().export(spans)
            EXPORTED["accepted" if result is SpanExportResult.SUCCESS else "refused"] += len(spans)
            return result

    return Counting(endpoint=endpoint)


def instrument(library: str, provider: Any, logs: Any) -> None:
    """Turn on one library's instrumentation, as its documentation says to."""
    if library == "otel-genai":  # opentelemetry-instrumentation-openai-v2 (OpenTelemetry's own)
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider, logger_provider=logs)
    elif library == "openllmetry":  # Traceloop's instrumentations
        from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
        AnthropicInstrumentor().instrument(tracer_provider=provider)
        if importlib.util.find_spec("opentelemetry.instrumentation.bedrock"):  # not in the legacy environment
            from opentelemetry.instrumentation.bedrock import BedrockInstrumentor

            BedrockInstrumentor().instrument(tracer_provider=provider)
    elif library == "openinference":
        from openinference.instrumentation.anthropic import AnthropicInstrumentor
        from openinference.instrumentation.bedrock import BedrockInstrumentor
        from openinference.instrumentation.google_genai import GoogleGenAIInstrumentor
        from openinference.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
        AnthropicInstrumentor().instrument(tracer_provider=provider)
        BedrockInstrumentor().instrument(tracer_provider=provider)
        GoogleGenAIInstrumentor().instrument(tracer_provider=provider)
    elif library == "openinference-langchain":  # LangChain's runs only (its chat model spans are the LLM calls)
        from openinference.instrumentation.langchain import LangChainInstrumentor

        LangChainInstrumentor().instrument(tracer_provider=provider)
    elif library == "openlit":
        import openlit

        # OpenLIT fetches its price list from the internet unless given one: an empty local list keeps the
        # test offline (every model is then one OpenLIT cannot price, as with any model it does not list).
        prices = Path(os.environ.get("TMPDIR", "/tmp")) / "openlit-empty-prices.json"
        prices.write_text("{}")
        openlit.init(disable_metrics=True, disable_batch=True, pricing_json=str(prices), disable_events=True)
    elif library == "pydantic-ai":
        from pydantic_ai import Agent

        Agent.instrument_all()  # every agent records its runs with the global tracer provider
    elif library == "langsmith":  # LangSmith's OpenTelemetry export of LangChain runs
        os.environ.update(dict.fromkeys(("LANGSMITH_OTEL_ENABLED", "LANGSMITH_TRACING", "LANGSMITH_OTEL_ONLY"), "true"))
    else:
        raise SystemExit(f"unknown library {library!r}")


def main() -> None:
    library, calls = sys.argv[1], sys.argv[2:]
    server, base = serve()
    provider = tracer_provider()
    logs = logger_provider()
    instrument(library, provider, logs)
    for name in calls:
        CALLS[name](base)
    if library == "langsmith":  # LangSmith hands runs to OpenTelemetry from a background thread
        from langchain_core.tracers.langchain import wait_for_all_tracers

        wait_for_all_tracers()
    provider.force_flush()
    provider.shutdown()
    if logs is not None:
        logs.shutdown()
    server.shutdown()
    if EXPORTED["refused"]:
        raise SystemExit(f"the receiver refused {EXPORTED['refused']} spans or events")
    print(f"exported {EXPORTED['accepted']} {EXPORTED['events']}", flush=True)


if __name__ == "__main__":
    main()
