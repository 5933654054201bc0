"""Pipeline stage: bounded queue, COPY writer pool, retries. Knows rows and tables, nothing of OTLP."""
