"""The one place where outcomes become gRPC status codes and HTTP responses (as the Collector's
`internal/errors`).

Backpressure is gRPC UNAVAILABLE with `google.rpc.RetryInfo` and HTTP 503 with `Retry-After`: never a
bare RESOURCE_EXHAUSTED, which Go exporters treat as permanent and drop. A key over its rate limit gets
the same retryable gRPC answer and HTTP 429 (what HTTP clients expect for "too many requests"; OTel
exporters retry 429 and 503 alike, honouring Retry-After). Error bodies are `google.rpc.Status`, in the
request's own encoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc
import orjson
from google.protobuf import duration_pb2
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from receiver.frontends.outcomes import Accepted, Refusal, Refused

GRPC_CODES: dict[Refusal, grpc.StatusCode] = {
    Refusal.OVERLOADED: grpc.StatusCode.UNAVAILABLE,
    Refusal.SHUTTING_DOWN: grpc.StatusCode.UNAVAILABLE,
    Refusal.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Refusal.MALFORMED: grpc.StatusCode.INVALID_ARGUMENT,
    Refusal.UNSUPPORTED_MEDIA: grpc.StatusCode.INVALID_ARGUMENT,
    Refusal.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Refusal.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    Refusal.RATE_LIMITED: grpc.StatusCode.UNAVAILABLE,
    Refusal.INTERNAL: grpc.StatusCode.INTERNAL,
}

HTTP_STATUSES: dict[Refusal, int] = {
    Refusal.OVERLOADED: 503,
    Refusal.SHUTTING_DOWN: 503,
    Refusal.TOO_LARGE: 413,
    Refusal.MALFORMED: 400,
    Refusal.UNSUPPORTED_MEDIA: 415,
    Refusal.UNAUTHENTICATED: 401,
    Refusal.FORBIDDEN: 403,
    Refusal.RATE_LIMITED: 429,
    Refusal.INTERNAL: 500,
}

_RPC_CODES = {
    grpc.StatusCode.UNAVAILABLE: code_pb2.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED: code_pb2.RESOURCE_EXHAUSTED,
    grpc.StatusCode.INVALID_ARGUMENT: code_pb2.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED: code_pb2.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED: code_pb2.PERMISSION_DENIED,
    grpc.StatusCode.INTERNAL: code_pb2.INTERNAL,
}


def response_message(response_type: type[Message], rejected_field: str, outcome: Accepted) -> Message:
    """Export*ServiceResponse; partial_success is set only when something was rejected or noted."""
    response = response_type()
    if outcome.rejected or outcome.message:
        setattr(response.partial_success, rejected_field, outcome.rejected)
        response.partial_success.error_message = outcome.message
    return response


def rpc_status(refused: Refused) -> status_pb2.Status:
    status = status_pb2.Status(code=_RPC_CODES[GRPC_CODES[refused.reason]], message=refused.message)
    if refused.retry_after_s is not None:
        seconds = max(0.0, refused.retry_after_s)
        info = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=int(seconds), nanos=int((seconds % 1) * 1e9))
        )
        status.details.add().Pack(info)
    return status


@dataclass(frozen=True, slots=True)
class GrpcError:
    code: grpc.StatusCode
    message: str
    trailing_metadata: tuple[tuple[str, bytes], ...]


def grpc_error(refused: Refused) -> GrpcError:
    details = rpc_status(refused).SerializeToString()
    return GrpcError(GRPC_CODES[refused.reason], refused.message, (("grpc-status-details-bin", details),))


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    body: bytes
    headers: dict[str, str]


def _encode(message: Message, json: bool) -> bytes:
    if json:
        return orjson.dumps(MessageToDict(message))
    return message.SerializeToString()


def http_success(response: Message, json: bool) -> HttpReply:
    return HttpReply(200, _encode(response, json), {})


def http_error(refused: Refused, json: bool) -> HttpReply:
    headers: dict[str, str] = {}
    if refused.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(refused.retry_after_s)))
    return HttpReply(HTTP_STATUSES[refused.reason], _encode(rpc_status(refused), json), headers)
