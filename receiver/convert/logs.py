"""OTLP ExportLogsServiceRequest -> `llm_logs` row tuples (columns in `receiver.schema`).

One row per log record (events included: an event is a log record with an event name).
- `ts` is `time_unix_nano`, else `observed_time_unix_nano`, else the time the receiver received the
  request (`ConvertOptions.received_unix_nanos`, which then is `observed_ts` too). `observed_ts` is the
  record's observed time, NULL when it had none.
- `trace_id` / `span_id` are stored only when valid (16 / 8 bytes, not all zeros); otherwise NULL.
  Never made up, never a reason to refuse the record: a log line is worth keeping without them.
- `body`: string bodies verbatim (cleaned of NUL, capped like attributes); any other type as its JSON
  text, with `body_json` holding it structured (maps and arrays stay queryable as jsonb). Bytes are
  base64, as in OTLP/JSON.
- `event_name`: the record's `event_name`, else its `event.name` attribute.
- provider / model: the record's GenAI attributes, else the resource's.

Pure: no I/O, no globals. A record is rejected only when `severity_number` is outside 0..24 (the
range the OTLP log data model defines), when the time it would be stored under (`time_unix_nano`, else
`observed_time_unix_nano`) is outside the accepted window (older than llm_logs' retention, or further
ahead of the receive time than limits.max_future_skew_s; see receiver.convert.window), or when it has
no time at all and the caller gave no receive time. A record without any time is stamped with the
receive time, which is always inside the window.
"""

from __future__ import annotations

from typing import Any

from receiver.convert import identity
from receiver.convert.attributes import any_value, clean_text, key_values
from receiver.convert.budget import charge_texts
from receiver.convert.common import Converted, ConvertOptions
from receiver.convert.envelope import json_text, resource_header, scope_header
from receiver.convert.genai import as_text, provider_and_model
from receiver.convert.pgvalues import Uuid, int32_from_uint32, timestamp_from_unix_nanos

SIGNAL = "logs"  # the key of this signal's window in ConvertOptions.windows
MAX_SEVERITY = 24  # SEVERITY_NUMBER_FATAL4
_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)


def convert_logs(request: Any, options: ConvertOptions) -> Converted:
    """Every log record of the request -> one row tuple, or one rejection with its reason."""
    out = Converted()
    limit = options.max_attribute_bytes
    stats = out.stats
    append = out.rows.append
    received_ns = options.received_unix_nanos
    budget = options.budget
    project_id = options.project_id
    window = options.window(SIGNAL)
    earliest, latest = window.bounds(received_ns)
    index = 0
    for resource_logs in request.resource_logs:
        resource_json, service_name, resource_provider, resource_model, resource_hash = resource_header(
            identity.LOGS_DOMAIN, resource_logs.resource, resource_logs.schema_url, limit, stats, project_id
        )
        charge_texts(budget, resource_json)
        for scope_logs in resource_logs.scope_logs:
            scope_name, scope_version, scope_hash = scope_header(
                resource_hash, scope_logs.scope, scope_logs.schema_url, limit, stats
            )
            charge_texts(budget, scope_name, scope_version)
            for record in scope_logs.log_records:
                severity = record.severity_number
                if not 0 <= severity <= MAX_SEVERITY:
                    out.reject(f"log record {index}: severity_number {severity} is outside 0..{MAX_SEVERITY}")
                    index += 1
                    continue
                time_ns = record.time_unix_nano
                observed_ns = record.observed_time_unix_nano
                stored_ns = time_ns or observed_ns
                if stored_ns and not earliest <= stored_ns <= latest:
                    what = "time" if time_ns else "observed time"
                    out.reject_time(f"log record {index}", what, window, stored_ns, received_ns)
                    index += 1
                    continue
                if time_ns:
                    ts = timestamp_from_unix_nanos(time_ns)
                    observed_ts = timestamp_from_unix_nanos(observed_ns) if observed_ns else None
                elif observed_ns:
                    ts = observed_ts = timestamp_from_unix_nanos(observed_ns)
                elif received_ns:
                    ts = observed_ts = timestamp_from_unix_nanos(received_ns)
                else:
                    out.reject(f"log record {index}: no time_unix_nano, no observed_time_unix_nano")
                    index += 1
                    continue
                index += 1
                trace_id = record.trace_id
                span_id = record.span_id
                body = body_json = None
                if record.HasField("body"):
                    kind = record.body.WhichOneof("value")
                    if kind == "string_value":
                        body = clean_text(record.body.string_value, limit, stats)
                    elif kind is not None:
                        body = body_json = json_text(any_value(record.body, limit, stats))
                attrs = key_values(record.attributes, limit, stats)
                event_name = clean_text(record.event_name, limit, stats) or as_text(attrs.get("event.name"))
                provider, model = provider_and_model(attrs) if attrs else (None, None)
                severity_text = clean_text(record.severity_text, limit, stats) or None
                attributes_json = json_text(attrs)
                charge_texts(budget, body, event_name, severity_text, attributes_json)
                append(
                    (
                        ts,
                        observed_ts,
                        Uuid(identity.item_id(scope_hash, record)),
                        Uuid(trace_id) if len(trace_id) == 16 and trace_id != _ZERO_TRACE_ID else None,
                        span_id.hex() if len(span_id) == 8 and span_id != _ZERO_SPAN_ID else None,
                        severity,
                        severity_text,
                        body,
                        body_json,
                        event_name,
                        int32_from_uint32(record.flags),
                        service_name,
                        provider or resource_provider,
                        model or resource_model,
                        scope_name,
                        scope_version,
                        attributes_json,
                        resource_json,
                        project_id,
                    )
                )
    return out
