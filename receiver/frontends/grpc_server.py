"""OTLP/gRPC front end: TraceService/MetricsService/LogsService `Export`, plus grpc.health.v1.

Handlers take the raw request bytes (no generated servicer), so size and queue room are checked before
the protobuf is parsed, and parsing errors become a clean INVALID_ARGUMENT. gRPC itself inflates gzip.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from receiver.endpoints import StartupError
from receiver.frontends.ingest import Ingest
from receiver.frontends.outcomes import Accepted, Outcome, Refused
from receiver.frontends.signals import SignalSpec
from receiver.frontends.status import grpc_error, response_message
from receiver.frontends.tls import TlsCredentials

Handler = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]

MAX_RESPONSE_BYTES = 4 * 1024 * 1024


def _export_handler(spec: SignalSpec, ingest: Ingest) -> Handler:
    # The answer to almost every request: nothing rejected. Serialized once, not per request.
    success = response_message(spec.response_type, spec.rejected_field, Accepted(0)).SerializeToString()

    async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        key = None
        if ingest.authenticating:  # the metadata is read only when a key is to be checked
            metadata = {
                name.lower(): value for name, value in (context.invocation_metadata() or ()) if isinstance(value, str)
            }
            key = ingest.authenticate(spec, metadata, "grpc")
        if isinstance(key, Refused):
            outcome: Outcome = key
        else:
            outcome = await ingest.handle(spec, request, json=False, gzip=False, transport="grpc", key=key)
        if isinstance(outcome, Accepted):
            if not outcome.rejected and not outcome.message:
                return success
            return response_message(spec.response_type, spec.rejected_field, outcome).SerializeToString()
        # Answered without raising: context.abort's exception stays on grpc's call state, and its
        # traceback holds this frame (and the request body) in a reference cycle that only the cyclic
        # garbage collector breaks, which runs rarely here: under overload refused bodies piled up.
        error = grpc_error(outcome)
        context.set_code(error.code)
        context.set_details(error.message)
        context.set_trailing_metadata(error.trailing_metadata)
        return b""  # with a non-OK status grpc.aio discards the returned message (sends an empty one)

    return export


class GrpcFrontend:
    def __init__(
        self,
        endpoint: str,
        ingest: Ingest,
        signals: Iterable[SignalSpec],
        max_request_bytes: int,
        tls: TlsCredentials | None = None,
        *,
        reuse_port: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self._tls = tls
        # SO_REUSEPORT only when worker processes share the port: otherwise a second receiver started
        # by mistake on the same port must fail to bind, not silently take half the connections.
        self._reuse_port = reuse_port
        self._ingest = ingest
        self._signals = tuple(signals)
        self._max_request_bytes = max_request_bytes
        self._server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()
        self.port: int | None = None

    async def start(self) -> None:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self._max_request_bytes),
                ("grpc.max_send_message_length", MAX_RESPONSE_BYTES),
                ("grpc.so_reuseport", 1 if self._reuse_port else 0),
            ]
        )
        by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        for spec in self._signals:
            service, method = spec.grpc_method.lstrip("/").rsplit("/", 1)
            by_service.setdefault(service, {})[method] = grpc.unary_unary_rpc_method_handler(
                _export_handler(spec, self._ingest)
            )
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(service, methods) for service, methods in by_service.items()]
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        try:
            if self._tls is None:
                self.port = server.add_insecure_port(self.endpoint)
            else:
                self.port = server.add_secure_port(self.endpoint, self._tls.grpc_credentials())
        except RuntimeError as exc:
            raise StartupError(
                f"cannot listen for OTLP/gRPC on {self.endpoint} ({exc}); is another process using the port? "
                "Change otlp.grpc_endpoint (env OBSERVATORY__OTLP__GRPC_ENDPOINT)"
            ) from None
        await server.start()
        self._server = server
        await self.set_serving(False)

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set("", status)
        for spec in self._signals:
            await self.health.set(spec.grpc_method.lstrip("/").rsplit("/", 1)[0], status)

    async def stop(self, grace_s: float) -> None:
        if self._server is not None:
            await self.set_serving(False)
            await self._server.stop(grace_s)
            self._server = None
