"""llm-observatory-loadgen: realistic OTLP load for the LLM Observatory receiver, with exact verification.

Modules, one job each:
  ids        the trace-id layout that makes every sent span unique and attributable to its request
  workload   realistic LLM traces (chat, embeddings, tool calls, agents), correlated logs, GenAI metrics
  bodies     pre-serialized request bodies and the cheap per-send id patch
  transport  OTLP/gRPC and OTLP/HTTP exporters: one request in, one classified result out
  retry      which results are retried and after how long (OTLP exporter rules)
  schedule   the open-loop timetable (or closed loop), the in-flight bound, retries
  stats      counters, latencies, percentiles, the per-second timeline
  verify     what the database holds for the run, compared with what was acknowledged
  report     progress lines, the final text report and the --json document
  runner     one run from start to verdict;  cli  the command line
"""

__version__ = "0.1.0"
