// The Vercel AI SDK (`ai` with @ai-sdk/openai and @ai-sdk/anthropic) making real calls against the fake
// provider, its telemetry (`experimental_telemetry`: the ai.* spans) exported by the OpenTelemetry JS SDK
// over OTLP/HTTP (protobuf) to the receiver. The Node counterpart of tests/fidelity/scenario.py:
//
//   FIDELITY_NODE_MODULES=var/fidelity/node FIDELITY_PROVIDER_URL=http://127.0.0.1:PORT \
//   OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_SERVICE_NAME=svc node scenario.mjs CALL ...
//
// It prints `exported N` (spans the receiver accepted) last, as the Python scenario does.
import { createRequire } from "node:module";
import path from "node:path";

// The packages live in the environment `make fidelity-envs` built, not beside this file.
const require = createRequire(path.resolve(process.env.FIDELITY_NODE_MODULES ?? ".", "package.json"));
const { generateText, streamText, embed } = require("ai");
const { createOpenAI } = require("@ai-sdk/openai");
const { createAnthropic } = require("@ai-sdk/anthropic");
const { trace } = require("@opentelemetry/api");
const { BasicTracerProvider, SimpleSpanProcessor } = require("@opentelemetry/sdk-trace-base");
const { resourceFromAttributes } = require("@opentelemetry/resources");
const { OTLPTraceExporter } = require("@opentelemetry/exporter-trace-otlp-proto");

const base = process.env.FIDELITY_PROVIDER_URL;
const openai = createOpenAI({ baseURL: `${base}/v1`, apiKey: "sk-fake" });
const anthropic = createAnthropic({ baseURL: `${base}/v1`, apiKey: "sk-ant-fake" });
const telemetry = { isEnabled: true };
const prompt = "What is the capital of France?";

const calls = {
  async openai_chat() {
    await generateText({ model: openai.chat("gpt-4o-mini"), prompt, maxRetries: 0, experimental_telemetry: telemetry });
  },
  async openai_stream() {
    const result = streamText({ model: openai.chat("gpt-4o"), prompt, maxRetries: 0, experimental_telemetry: telemetry });
    for await (const _ of result.textStream) {
      // drain the stream
    }
    await result.usage;
  },
  async openai_embeddings() {
    await embed({
      model: openai.embedding("text-embedding-3-small"),
      value: "hello world",
      maxRetries: 0,
      experimental_telemetry: telemetry,
    });
  },
  async openai_error() {
    try {
      await generateText({ model: openai.chat("fail-model"), prompt, maxRetries: 0, experimental_telemetry: telemetry });
    } catch {
      return;
    }
    throw new Error("the fake provider did not refuse fail-model");
  },
  async anthropic_chat() {
    await generateText({
      model: anthropic("claude-haiku-4-5"),
      prompt,
      maxOutputTokens: 256,
      maxRetries: 0,
      experimental_telemetry: telemetry,
    });
  },
};

const counts = { accepted: 0, refused: 0 };
const exporter = new OTLPTraceExporter({
  url: `${process.env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/$/, "")}/v1/traces`,
});
const counting = {
  export(spans, done) {
    exporter.export(spans, (result) => {
      counts[result.code === 0 ? "accepted" : "refused"] += spans.length;
      done(result);
    });
  },
  shutdown: () => exporter.shutdown(),
  forceFlush: () => exporter.forceFlush(),
};
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ "service.name": process.env.OTEL_SERVICE_NAME }),
  spanProcessors: [new SimpleSpanProcessor(counting)],
});
trace.setGlobalTracerProvider(provider);

for (const name of process.argv.slice(2)) {
  if (!calls[name]) throw new Error(`unknown call ${name}`);
  await calls[name]();
}
await provider.forceFlush();
await provider.shutdown();
if (counts.refused) {
  console.error(`the receiver refused ${counts.refused} spans`);
  process.exit(1);
}
console.log(`exported ${counts.accepted}`);
