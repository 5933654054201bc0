-- Native flavor (plain PostgreSQL >= 14): llm_traces becomes a table partitioned by day on ts.
-- The maintenance task creates daily partitions ahead and drops them for retention; the DEFAULT
-- partition catches rows outside every daily partition so no span is ever refused for its date.
-- The column list stays in one place: the common file's table is the template.
ALTER TABLE llm_traces RENAME TO _llm_traces_template;
CREATE TABLE llm_traces (LIKE _llm_traces_template INCLUDING ALL) PARTITION BY RANGE (ts);
DROP TABLE _llm_traces_template;
COMMENT ON TABLE llm_traces IS 'One row per OTLP span; LLM columns are NULL on non-LLM spans';
CREATE TABLE llm_traces_default PARTITION OF llm_traces DEFAULT;
