-- Native flavor: GET /metrics?name=...: the points of one metric in a window. The TimescaleDB flavor
-- has no need of it: its llm_metrics keeps chunks of an hour with a (ts DESC) index, and there this index
-- measured slower than without it (README, "Read API"); a native partition holds partition_hours of
-- every metric with no index on time. An insert lands at the end of its metric's range (one hot page per
-- metric name), whatever the table's size. Names are free text and a btree entry over ~2.7 KB fails its
-- whole COPY batch: names over 1 KB (OTLP names are <= 255 characters) are left out of the index
-- (queries say `octet_length(metric_name) <= 1024` to use it).
CREATE INDEX llm_metrics_name_ts_idx ON llm_metrics (metric_name, ts) WHERE octet_length(metric_name) <= 1024;
