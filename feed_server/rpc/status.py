"""The project's codes (feed_server.protocol.errors.Code) as gRPC statuses and back: the one place they meet.

The feed's gRPC servicer ends a refused call with :func:`to_grpc` of its RequestError's code; the consumer's gRPC
transport turns the status of a failed call into a code with :func:`from_grpc`. Nothing else on either side
names a ``grpc.StatusCode`` (NATS carries the codes' own names).
"""

from __future__ import annotations

import grpc

from feed_server.protocol.errors import Code

__all__ = ["from_grpc", "to_grpc"]

_TO_GRPC: dict[Code, grpc.StatusCode] = {
    Code.UNKNOWN_INSTRUMENT: grpc.StatusCode.NOT_FOUND,
    Code.BAD_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    Code.REFUSED: grpc.StatusCode.FAILED_PRECONDITION,
    Code.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Code.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Code.UNSUPPORTED: grpc.StatusCode.UNIMPLEMENTED,
    Code.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Code.TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    Code.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Code.INTERNAL: grpc.StatusCode.INTERNAL,
}
_FROM_GRPC: dict[grpc.StatusCode, Code] = {status: code for code, status in _TO_GRPC.items()}
_FROM_GRPC.update(
    {
        grpc.StatusCode.CANCELLED: Code.UNAVAILABLE,  # the call was cut on the way (a proxy, a closing channel)
        grpc.StatusCode.OUT_OF_RANGE: Code.BAD_REQUEST,
        grpc.StatusCode.ALREADY_EXISTS: Code.REFUSED,
        grpc.StatusCode.ABORTED: Code.INTERNAL,
        grpc.StatusCode.DATA_LOSS: Code.INTERNAL,
        grpc.StatusCode.UNKNOWN: Code.INTERNAL,
    }
)


def to_grpc(code: Code) -> grpc.StatusCode:
    """The gRPC status a call refused with ``code`` ends with."""
    return _TO_GRPC[code]


def from_grpc(status: grpc.StatusCode | None) -> Code:
    """The code of a call that ended with gRPC ``status`` (any status not OK; None, as grpc gives for a status it
    cannot read, is INTERNAL)."""
    if status is None:
        return Code.INTERNAL
    return _FROM_GRPC.get(status, Code.INTERNAL)
