// One fixed, varied set of spans made with the OpenTelemetry JS SDK, exported twice: by the OTLP/HTTP
// JSON exporter (exporter-trace-otlp-http) and by the protobuf one (exporter-trace-otlp-proto), each to
// its own receiver. tests/test_js_json_export.py then compares the two receivers' rows column by column:
// the receiver must store what the JS SDK sent the same way whichever encoding carried it.
//
//   FIDELITY_NODE_MODULES=var/fidelity/node EXPORT_JSON_ENDPOINT=http://127.0.0.1:4318 \
//   EXPORT_PROTO_ENDPOINT=http://127.0.0.1:4319 node export_both.mjs
//
// Prints `exported N` last; exits 1 when either export fails. With EXPORT_JSON_BODY=body.json and no
// endpoints it only writes the JSON body the exporter would send (its own serializer's bytes), so the
// test can check the receiver's C encoder takes every part of it, and prints `serialized N`.
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.resolve(process.env.FIDELITY_NODE_MODULES ?? ".", "package.json"));
const { trace, context, SpanKind, SpanStatusCode, createTraceState } = require("@opentelemetry/api");
const { BasicTracerProvider, SimpleSpanProcessor, InMemorySpanExporter } = require("@opentelemetry/sdk-trace-base");
const { resourceFromAttributes } = require("@opentelemetry/resources");
const { OTLPTraceExporter: JsonExporter } = require("@opentelemetry/exporter-trace-otlp-http");
const { OTLPTraceExporter: ProtoExporter } = require("@opentelemetry/exporter-trace-otlp-proto");
const { JsonTraceSerializer } = require("@opentelemetry/otlp-transformer");

const collected = new InMemorySpanExporter();
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({
    "service.name": "js-export-both",
    "service.version": "1.4.2",
    "deployment.environment.name": "staging",
    "host.cores": 8,
  }),
  spanProcessors: [new SimpleSpanProcessor(collected)],
});
const tracer = provider.getTracer("export-both", "0.3.1");
const bare = provider.getTracer("export-both-bare"); // a scope without a version

// Times an hour back (inside the receiver's retention), with nanoseconds a millisecond cannot hold.
const base = Math.floor(Date.now() / 1000) - 3600;
const at = (ms) => [base + Math.floor(ms / 1000), (ms % 1000) * 1_000_000 + 123_457];
const LONG = "x".repeat(1000) + "é€😀" + "y".repeat(1040); // a ~2 KB string, non-ASCII in the middle

// A remote parent with a trace state: the root's trace_state comes from it.
const remote = trace.setSpanContext(context.active(), {
  traceId: "5b8efff798038103d269b633813fc60c",
  spanId: "eee19b7ec3c1b174",
  traceFlags: 1,
  isRemote: true,
  traceState: createTraceState("vendor=abc,other=1:2"),
});

const root = tracer.startSpan(
  "chat gpt-4o",
  {
    kind: SpanKind.CLIENT,
    startTime: at(0),
    attributes: {
      "gen_ai.operation.name": "chat",
      "gen_ai.system": "openai",
      "gen_ai.provider.name": "openai",
      "gen_ai.request.model": "gpt-4o",
      "gen_ai.response.model": "gpt-4o-2024-08-06",
      "gen_ai.usage.input_tokens": 1200,
      "gen_ai.usage.output_tokens": 300,
      "gen_ai.usage.cache_read.input_tokens": 400,
      "gen_ai.response.finish_reasons": ["stop", "length"],
      "gen_ai.request.temperature": 0.7,
      "gen_ai.request.top_p": 0.1,
      "gen_ai.request.max_tokens": 256,
      "user.id": "user-42",
      "session.id": "conv-7",
      "app.string": "plain ASCII",
      "app.unicode": "Grüße, 世界 😀",
      "app.empty": "",
      "app.int": -17,
      "app.int.big": 9007199254740991,
      "app.double": 3.141592653589793,
      "app.double.tiny": 1e-7,
      // Not here, where the JS SDK's two serializers send different values (the receiver stores what it
      // is sent): an integral number past 2^53 (2 ** 60 goes as intValue 1152921504606847000 in JSON,
      // JSON.stringify's digits, and as 1152921504606846976 in protobuf), or outside int64 (1.5e300 goes
      // as an out-of-range intValue in JSON, which refuses the span, and as a double in protobuf).
      "app.double.whole": 2.0, // a JS number: the SDK sends it as an int
      "app.bool": true,
      "app.bool.false": false,
      "app.array.str": ["a", "", "ü"],
      "app.array.int": [1, -2, 3],
      "app.array.double": [0.5, 1.25],
      "app.array.bool": [true, false],
      "app.long": LONG,
    },
  },
  remote,
);
root.addEvent("gen_ai.content.prompt", { "gen_ai.prompt": "What is the capital of France?", "n": 1 }, at(5));
root.addEvent("no attributes", at(6));

const tool = tracer.startSpan(
  "execute_tool get_weather",
  { kind: SpanKind.INTERNAL, startTime: at(10), attributes: { "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather" } },
  trace.setSpan(context.active(), root),
);
tool.addLink({ context: root.spanContext(), attributes: { "link.reason": "caused-by", "link.n": 2 } });
tool.addEvent("tool.result", { "result.size": 12, "result.ok": true, "result.ratio": 0.25 }, at(20));
tool.end(at(30));

const failed = bare.startSpan("chat claude-haiku-4-5", {
  kind: SpanKind.CLIENT,
  startTime: at(100),
  attributes: {
    "gen_ai.operation.name": "chat",
    "gen_ai.system": "anthropic",
    "gen_ai.request.model": "claude-haiku-4-5",
    "gen_ai.usage.input_tokens": 15,
    "error.type": "overloaded_error",
  },
  links: [{ context: tool.spanContext() }], // a link without attributes
});
failed.addEvent("exception", { "exception.type": "APIError", "exception.message": "Overloaded (529)" }, at(150));
failed.setStatus({ code: SpanStatusCode.ERROR, message: "Overloaded: the provider refused (529) — retry later" });
failed.end(at(180));

for (const [name, kind] of [
  ["POST /v1/chat", SpanKind.SERVER],
  ["queue publish", SpanKind.PRODUCER],
  ["queue receive", SpanKind.CONSUMER],
]) {
  const span = tracer.startSpan(name, { kind, startTime: at(200), attributes: { "app.kind": kind } });
  span.setStatus({ code: SpanStatusCode.OK });
  span.end(at(201));
}
const embeddings = tracer.startSpan("embeddings text-embedding-3-small", {
  kind: SpanKind.CLIENT,
  startTime: at(300),
  attributes: {
    "gen_ai.operation.name": "embeddings",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "text-embedding-3-small",
    "gen_ai.usage.input_tokens": 8,
  },
});
embeddings.end(at(1300));
root.end(at(2500));

await provider.forceFlush();
const spans = collected.getFinishedSpans();
if (process.env.EXPORT_JSON_BODY) {
  writeFileSync(process.env.EXPORT_JSON_BODY, JsonTraceSerializer.serializeRequest(spans));
  if (!process.env.EXPORT_JSON_ENDPOINT) {
    console.log(`serialized ${spans.length}`);
    process.exit(0);
  }
}

function exportTo(Exporter, endpoint) {
  const exporter = new Exporter({ url: `${endpoint.replace(/\/$/, "")}/v1/traces` });
  return new Promise((resolve) => exporter.export(spans, resolve)).finally(() => exporter.shutdown());
}
const results = await Promise.all([
  exportTo(JsonExporter, process.env.EXPORT_JSON_ENDPOINT),
  exportTo(ProtoExporter, process.env.EXPORT_PROTO_ENDPOINT),
]);
await provider.shutdown();
const failures = results.flatMap((r, i) => (r.code === 0 ? [] : [`${["json", "protobuf"][i]}: ${r.error ?? r.code}`]));
if (failures.length) {
  console.error(`export failed: ${failures.join("; ")}`);
  process.exit(1);
}
console.log(`exported ${spans.length}`);
