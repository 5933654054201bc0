"""GenAI client metrics as an SDK's periodic metric reader exports them.

Each exporter stands for one application instance and sends, every `--metrics-interval` seconds, one
request with the two GenAI client histograms for every (provider, model, operation) its traces use:
`gen_ai.client.token.usage` ({token}, one point per gen_ai.token.type) and
`gen_ai.client.operation.duration` (s), delta temporality, the conventions' bucket boundaries.

Unlike trace bodies these are built at send time: a few dozen points per request, once per interval,
is cheap, and it gives every point the real interval (start = previous export, time = now). The
receiver's point identity includes the resource, the attributes and both times, and each exporter has
its own `service.instance.id`, so no two exports of a run can collapse into one stored point.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from .bodies import encode
from .ids import RunId
from .workload import APPS, SERVERS, resource_for

TOKEN_BOUNDS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BOUNDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA


def _attrs(pairs: dict[str, str]) -> list[common_pb2.KeyValue]:
    return [common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v)) for k, v in pairs.items()]


def _histogram_point(
    rng: random.Random, bounds: Sequence[float], attrs: list[common_pb2.KeyValue], mu: float, start: int, end: int
) -> metrics_pb2.HistogramDataPoint:
    count = rng.randint(1, 40)
    values = [rng.lognormvariate(mu, 0.8) for _ in range(count)]
    buckets = [0] * (len(bounds) + 1)
    for value in values:
        buckets[bisect.bisect_left(bounds, value)] += 1
    return metrics_pb2.HistogramDataPoint(
        attributes=attrs,
        start_time_unix_nano=start,
        time_unix_nano=end,
        count=count,
        sum=sum(values),
        min=min(values),
        max=max(values),
        bucket_counts=buckets,
        explicit_bounds=bounds,
    )


class MetricsBuilder:
    """One exporter's metric reader: `build(start, end)` -> (body, data points)."""

    def __init__(
        self, run: RunId, exporter: int, series: Sequence[tuple[str, str, str]], encoding: str, seed: int
    ) -> None:
        self.resource = resource_for(run, APPS[exporter % len(APPS)], 100 + exporter)
        self.series = list(series)
        self.encoding = encoding
        self.rng = random.Random(seed * 7919 + exporter)

    def build(self, start_ns: int, end_ns: int) -> tuple[bytes, int]:
        rng = self.rng
        usage, duration = [], []
        for provider, model, operation in self.series:
            common = {
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
                "server.address": SERVERS.get(provider, "localhost"),
            }
            duration.append(
                _histogram_point(
                    rng, DURATION_BOUNDS, _attrs(common), -0.5 if operation == "chat" else -2.0, start_ns, end_ns
                )
            )
            for token_type, mu in (("input", 6.5), ("output", 5.0)):
                if operation == "embeddings" and token_type == "output":
                    continue
                attrs = _attrs({**common, "gen_ai.token.type": token_type})
                usage.append(_histogram_point(rng, TOKEN_BOUNDS, attrs, mu, start_ns, end_ns))
        request = metrics_service_pb2.ExportMetricsServiceRequest(
            resource_metrics=[
                metrics_pb2.ResourceMetrics(
                    resource=self.resource,
                    scope_metrics=[
                        metrics_pb2.ScopeMetrics(
                            scope=common_pb2.InstrumentationScope(
                                name="opentelemetry.instrumentation.openai_v2", version="2.1b0"
                            ),
                            metrics=[
                                metrics_pb2.Metric(
                                    name="gen_ai.client.token.usage",
                                    description="Measures number of input and output tokens used",
                                    unit="{token}",
                                    histogram=metrics_pb2.Histogram(data_points=usage, aggregation_temporality=DELTA),
                                ),
                                metrics_pb2.Metric(
                                    name="gen_ai.client.operation.duration",
                                    description="GenAI operation duration",
                                    unit="s",
                                    histogram=metrics_pb2.Histogram(
                                        data_points=duration, aggregation_temporality=DELTA
                                    ),
                                ),
                            ],
                        )
                    ],
                )
            ]
        )
        return encode(request, self.encoding), len(usage) + len(duration)
