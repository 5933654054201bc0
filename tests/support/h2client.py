"""An HTTP/2 client (the `h2` library, an implementation independent of nghttp2) wired straight to a
`receiver.frontends._h2grpc.Session`, no socket in between: the tests and the fuzz target send exactly the
frames they mean to, and read every frame the session answers with.

`expected_call` is the pure-Python statement of the gRPC framing rules `_h2grpc.c` applies to a finished
request (what the C code must agree with, differential-tested like the decoders).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
MAX_PREFIXED = 0x7FFFFFFF


def grpc_frame(message: bytes, compressed: bool = False) -> bytes:
    return bytes([1 if compressed else 0]) + len(message).to_bytes(4, "big") + message


def request_headers(
    path: str = EXPORT, method: str = "POST", content_type: str | None = "application/grpc", extra: tuple = ()
) -> list[tuple[str, str]]:
    headers = [(":method", method), (":scheme", "http"), (":authority", "receiver"), (":path", path)]
    if content_type is not None:
        headers.append(("content-type", content_type))
    return [*headers, ("te", "trailers"), *extra]


@dataclass
class Answer:
    """What the client saw on one stream."""

    headers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    trailers: dict[str, str] = field(default_factory=dict)
    ended: bool = False
    reset: int | None = None  # RST_STREAM error code

    @property
    def status(self) -> int | None:
        value = self.trailers.get("grpc-status", self.headers.get("grpc-status"))
        return None if value is None else int(value)


class H2Client:
    def __init__(self, session: Any) -> None:
        self.session = session
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.answers: dict[int, Answer] = {}
        self.calls: list[tuple] = []  # what session.receive handed over, in order
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.pump()

    def pump(self) -> list[tuple]:
        """Deliver the client's pending frames to the session, and the session's answer to the client."""
        finished = self.session.receive(self.conn.data_to_send())
        self.calls += finished
        self.read_output()
        return finished

    def read_output(self) -> None:
        out = self.session.output()
        if not out:
            return
        for event in self.conn.receive_data(out):
            if isinstance(event, h2.events.ResponseReceived):
                self.answers.setdefault(event.stream_id, Answer()).headers = dict(event.headers)
            elif isinstance(event, h2.events.TrailersReceived):
                self.answers.setdefault(event.stream_id, Answer()).trailers = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.answers.setdefault(event.stream_id, Answer()).data += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.answers.setdefault(event.stream_id, Answer()).ended = True
            elif isinstance(event, h2.events.StreamReset):
                self.answers.setdefault(event.stream_id, Answer()).reset = event.error_code
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = event  # h2 then takes the connection as closed, even for a graceful notice
        data = self.conn.data_to_send()  # SETTINGS and PING acks, WINDOW_UPDATEs
        if data:
            self.calls += self.session.receive(data)
            self.read_output()

    def open(self, headers: list[tuple[str, str]] | None = None, end_stream: bool = False) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, headers or request_headers(), end_stream=end_stream)
        return stream_id

    def send(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """DATA frames of at most the peer's frame size (the session's flow-control window is 4 MiB)."""
        step = self.conn.max_outbound_frame_size
        chunks = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
        for i, chunk in enumerate(chunks):
            self.conn.send_data(stream_id, chunk, end_stream=end_stream and i == len(chunks) - 1)

    def call(self, body: bytes, headers: list[tuple[str, str]] | None = None) -> int:
        stream_id = self.open(headers)
        self.send(stream_id, body, end_stream=True)
        self.pump()
        return stream_id


def expected_call(method: str, content_type: str | None, path: str | None, body: bytes) -> tuple:
    """(message, compressed, problem reason) of a finished request, by the rules of _h2grpc.c's deliver()."""
    if method != "POST":
        return None, False, "unimplemented"
    ct = content_type or ""
    if not (ct.startswith("application/grpc") and (len(ct) == 16 or ct[16] in "+;")):
        return None, False, "unsupported_media"
    if path is None:
        return None, False, "unimplemented"
    if len(body) < 5:
        return None, False, "malformed"
    flag, declared = body[0], int.from_bytes(body[1:5], "big")
    if flag > 1 or declared != len(body) - 5:
        return None, False, "malformed"
    return body[5:], bool(flag), None
