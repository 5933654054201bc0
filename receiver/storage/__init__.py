"""Storage stage: connections, COPY, migrations, the embedded PostgreSQL cluster, pricing data, and the
data lifecycle (maintenance task, native partitions and rollups, `db verify`)."""
