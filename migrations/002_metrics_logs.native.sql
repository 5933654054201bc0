-- Native flavor: both tables partitioned by day on ts, with a DEFAULT partition (see 001).
ALTER TABLE llm_metrics RENAME TO _llm_metrics_template;
CREATE TABLE llm_metrics (LIKE _llm_metrics_template INCLUDING ALL) PARTITION BY RANGE (ts);
DROP TABLE _llm_metrics_template;
COMMENT ON TABLE llm_metrics IS 'One row per OTLP metric data point (gauge, sum, histogram, exponential_histogram, summary)';
CREATE TABLE llm_metrics_default PARTITION OF llm_metrics DEFAULT;

ALTER TABLE llm_logs RENAME TO _llm_logs_template;
CREATE TABLE llm_logs (LIKE _llm_logs_template INCLUDING ALL) PARTITION BY RANGE (ts);
DROP TABLE _llm_logs_template;
COMMENT ON TABLE llm_logs IS 'One row per OTLP log record / event';
CREATE TABLE llm_logs_default PARTITION OF llm_logs DEFAULT;
