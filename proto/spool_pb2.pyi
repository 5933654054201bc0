from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class SpoolRecord(_message.Message):
    __slots__ = ("version", "signal", "request", "received_unix_nano", "window_retention_s", "window_max_future_skew_s", "project_id")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    WINDOW_RETENTION_S_FIELD_NUMBER: _ClassVar[int]
    WINDOW_MAX_FUTURE_SKEW_S_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    version: int
    signal: str
    request: bytes
    received_unix_nano: int
    window_retention_s: int
    window_max_future_skew_s: int
    project_id: bytes
    def __init__(self, version: _Optional[int] = ..., signal: _Optional[str] = ..., request: _Optional[bytes] = ..., received_unix_nano: _Optional[int] = ..., window_retention_s: _Optional[int] = ..., window_max_future_skew_s: _Optional[int] = ..., project_id: _Optional[bytes] = ...) -> None: ...
