from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_UNSPECIFIED: _ClassVar[Side]
    SIDE_BID: _ClassVar[Side]
    SIDE_ASK: _ClassVar[Side]

class SnapshotReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SNAPSHOT_REASON_UNSPECIFIED: _ClassVar[SnapshotReason]
    SNAPSHOT_REASON_INITIAL: _ClassVar[SnapshotReason]
    SNAPSHOT_REASON_RESYNC: _ClassVar[SnapshotReason]
    SNAPSHOT_REASON_REQUEST: _ClassVar[SnapshotReason]
SIDE_UNSPECIFIED: Side
SIDE_BID: Side
SIDE_ASK: Side
SNAPSHOT_REASON_UNSPECIFIED: SnapshotReason
SNAPSHOT_REASON_INITIAL: SnapshotReason
SNAPSHOT_REASON_RESYNC: SnapshotReason
SNAPSHOT_REASON_REQUEST: SnapshotReason

class Instrument(_message.Message):
    __slots__ = ("instrument_id", "display_name", "kind", "tick_size", "lot_size", "price_decimals", "size_decimals", "order_tick_size", "order_lot_size")
    INSTRUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TICK_SIZE_FIELD_NUMBER: _ClassVar[int]
    LOT_SIZE_FIELD_NUMBER: _ClassVar[int]
    PRICE_DECIMALS_FIELD_NUMBER: _ClassVar[int]
    SIZE_DECIMALS_FIELD_NUMBER: _ClassVar[int]
    ORDER_TICK_SIZE_FIELD_NUMBER: _ClassVar[int]
    ORDER_LOT_SIZE_FIELD_NUMBER: _ClassVar[int]
    instrument_id: str
    display_name: str
    kind: str
    tick_size: str
    lot_size: str
    price_decimals: int
    size_decimals: int
    order_tick_size: str
    order_lot_size: str
    def __init__(self, instrument_id: _Optional[str] = ..., display_name: _Optional[str] = ..., kind: _Optional[str] = ..., tick_size: _Optional[str] = ..., lot_size: _Optional[str] = ..., price_decimals: _Optional[int] = ..., size_decimals: _Optional[int] = ..., order_tick_size: _Optional[str] = ..., order_lot_size: _Optional[str] = ...) -> None: ...

class ListInstrumentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListInstrumentsResponse(_message.Message):
    __slots__ = ("instruments", "source", "max_depth")
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MAX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[Instrument]
    source: str
    max_depth: int
    def __init__(self, instruments: _Optional[_Iterable[_Union[Instrument, _Mapping]]] = ..., source: _Optional[str] = ..., max_depth: _Optional[int] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("instrument_ids", "depth")
    INSTRUMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    instrument_ids: _containers.RepeatedScalarFieldContainer[str]
    depth: int
    def __init__(self, instrument_ids: _Optional[_Iterable[str]] = ..., depth: _Optional[int] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("instrument_id", "depth")
    INSTRUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    instrument_id: str
    depth: int
    def __init__(self, instrument_id: _Optional[str] = ..., depth: _Optional[int] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("session_id", "messages")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    messages: _containers.RepeatedCompositeFieldContainer[BookMessage]
    def __init__(self, session_id: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[BookMessage, _Mapping]]] = ...) -> None: ...

class Level(_message.Message):
    __slots__ = ("price_ticks", "size_lots")
    PRICE_TICKS_FIELD_NUMBER: _ClassVar[int]
    SIZE_LOTS_FIELD_NUMBER: _ClassVar[int]
    price_ticks: int
    size_lots: int
    def __init__(self, price_ticks: _Optional[int] = ..., size_lots: _Optional[int] = ...) -> None: ...

class LevelChange(_message.Message):
    __slots__ = ("side", "price_ticks", "size_lots")
    SIDE_FIELD_NUMBER: _ClassVar[int]
    PRICE_TICKS_FIELD_NUMBER: _ClassVar[int]
    SIZE_LOTS_FIELD_NUMBER: _ClassVar[int]
    side: Side
    price_ticks: int
    size_lots: int
    def __init__(self, side: _Optional[_Union[Side, str]] = ..., price_ticks: _Optional[int] = ..., size_lots: _Optional[int] = ...) -> None: ...

class Trade(_message.Message):
    __slots__ = ("price_ticks", "size_lots", "aggressor")
    PRICE_TICKS_FIELD_NUMBER: _ClassVar[int]
    SIZE_LOTS_FIELD_NUMBER: _ClassVar[int]
    AGGRESSOR_FIELD_NUMBER: _ClassVar[int]
    price_ticks: int
    size_lots: int
    aggressor: Side
    def __init__(self, price_ticks: _Optional[int] = ..., size_lots: _Optional[int] = ..., aggressor: _Optional[_Union[Side, str]] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("bids", "asks", "reason")
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    bids: _containers.RepeatedCompositeFieldContainer[Level]
    asks: _containers.RepeatedCompositeFieldContainer[Level]
    reason: SnapshotReason
    def __init__(self, bids: _Optional[_Iterable[_Union[Level, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[Level, _Mapping]]] = ..., reason: _Optional[_Union[SnapshotReason, str]] = ...) -> None: ...

class Update(_message.Message):
    __slots__ = ("changes", "trades")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[LevelChange]
    trades: _containers.RepeatedCompositeFieldContainer[Trade]
    def __init__(self, changes: _Optional[_Iterable[_Union[LevelChange, _Mapping]]] = ..., trades: _Optional[_Iterable[_Union[Trade, _Mapping]]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BookMessage(_message.Message):
    __slots__ = ("instrument_id", "sequence", "event_time_ns", "checksum", "snapshot", "update", "heartbeat", "book_digest", "session_id", "source_stale", "source_stale_reason")
    INSTRUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    BOOK_DIGEST_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_STALE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_STALE_REASON_FIELD_NUMBER: _ClassVar[int]
    instrument_id: str
    sequence: int
    event_time_ns: int
    checksum: int
    snapshot: Snapshot
    update: Update
    heartbeat: Heartbeat
    book_digest: int
    session_id: str
    source_stale: bool
    source_stale_reason: str
    def __init__(self, instrument_id: _Optional[str] = ..., sequence: _Optional[int] = ..., event_time_ns: _Optional[int] = ..., checksum: _Optional[int] = ..., snapshot: _Optional[_Union[Snapshot, _Mapping]] = ..., update: _Optional[_Union[Update, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., book_digest: _Optional[int] = ..., session_id: _Optional[str] = ..., source_stale: _Optional[bool] = ..., source_stale_reason: _Optional[str] = ...) -> None: ...

class RecordingHeader(_message.Message):
    __slots__ = ("instruments", "depth", "source_address", "session_id", "start_time_ns", "recorder")
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    RECORDER_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[Instrument]
    depth: int
    source_address: str
    session_id: str
    start_time_ns: int
    recorder: str
    def __init__(self, instruments: _Optional[_Iterable[_Union[Instrument, _Mapping]]] = ..., depth: _Optional[int] = ..., source_address: _Optional[str] = ..., session_id: _Optional[str] = ..., start_time_ns: _Optional[int] = ..., recorder: _Optional[str] = ...) -> None: ...

class RecordedItem(_message.Message):
    __slots__ = ("recv_time_ns", "item")
    RECV_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    recv_time_ns: int
    item: SubscribeResponse
    def __init__(self, recv_time_ns: _Optional[int] = ..., item: _Optional[_Union[SubscribeResponse, _Mapping]] = ...) -> None: ...
