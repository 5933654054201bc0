# LLM Observatory receiver. Needs a PostgreSQL server: pass DATABASE_URL (the embedded database of
# `make run` is for development and is not in this image).
#   docker build -t llm-observatory-receiver .
#   docker run -p 4317:4317 -p 4318:4318 -p 9090:9090 -p 8080:8080 \
#     -e DATABASE_URL=postgresql://observatory:secret@db:5432/observatory llm-observatory-receiver
# The whole stack (TimescaleDB, receiver, Prometheus, Grafana): docker compose up --build (README).
FROM python:3.11-slim AS build
# gcc builds the optional native converters and the OTLP/gRPC front end (on libnghttp2); without them
# the receiver falls back to pure Python and grpcio.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev libnghttp2-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN apt-get update && apt-get install -y --no-install-recommends libnghttp2-14 \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /var/lib/llm-observatory --create-home observatory
COPY config/receiver.toml /etc/llm-observatory/receiver.toml
USER observatory
WORKDIR /var/lib/llm-observatory
# Containers listen on every interface (the default config listens on localhost only; inside a
# container that would be unreachable). Set OBSERVATORY__AUTH__MODE=api_key and OBSERVATORY__OTLP__TLS__*
# before exposing the ports beyond a trusted network. The spool and the dead-letter file live in the
# volume (mount one for pipeline.durability = "spool").
ENV OBSERVATORY__OTLP__GRPC_ENDPOINT=0.0.0.0:4317 \
    OBSERVATORY__OTLP__HTTP_ENDPOINT=0.0.0.0:4318 \
    OBSERVATORY__ADMIN__ENDPOINT=0.0.0.0:9090 \
    OBSERVATORY__QUERY__ENDPOINT=0.0.0.0:8080 \
    OBSERVATORY__SPOOL__DIR=/var/lib/llm-observatory/spool \
    OBSERVATORY__DEAD_LETTER__DIR=/var/lib/llm-observatory/dead-letter \
    OBSERVATORY__LOGGING__FORMAT=json
EXPOSE 4317 4318 9090 8080
VOLUME ["/var/lib/llm-observatory"]
# Alive = the event loop answers (a receiver waiting for its database is alive: it queues or spools);
# readiness (database reachable and migrated) is GET /health/ready.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9090/health/live', timeout=2)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["llm-observatory-receiver"]
CMD ["run", "--config", "/etc/llm-observatory/receiver.toml"]
