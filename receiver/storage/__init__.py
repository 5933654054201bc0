"""Storage stage: connections, COPY, migrations, the embedded PostgreSQL cluster, pricing data."""
