# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: language = c++
"""The compiled order book: :class:`feed_server.protocol.book.OrderBook`'s consumer API in C++.

The pure-Python ``OrderBook`` (``feed_server/protocol/book.py``) is the readable reference and the fallback;
this one implements the same reading and writing methods with the same checks, the same refusals (the same
exceptions with the same messages, the book left as it was) and the same checksum and book digest
(``feed_server.protocol.checksum``), and ``tests/protocol/test_compiled_book.py`` feeds both the same streams
and compares every output. :mod:`feed_server.protocol.core` chooses which one runs.

Each side is a ``std::map`` from key to level, in the pure book's key space (bids keyed by the negated price,
so both sides iterate best first); each level keeps its size, its ``LEVEL_TEXT`` and its digest term, so a
change writes its text once and the checksum's top levels are re-read from the texts only when a change
reached them. One difference, at the edge of the wire contract: prices and sizes are the wire's int64, so a
value that is not an integer in that range is refused (``InvalidMessage``); the pure book takes any Python int.

``key_levels`` (the server's sorted view of a side) is not here: the feed's own books stay pure Python.
"""

from cpython.long cimport PyLong_Check
from cpython.tuple cimport PyTuple_Check, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.limits cimport LLONG_MIN
from libc.stdint cimport uint32_t
from libc.string cimport memcpy
from libcpp.map cimport map as cmap
from libcpp.vector cimport vector
from cython.operator cimport dereference as deref, preincrement as inc

from feed_server.protocol.book import OrderBook as PureOrderBook
from feed_server.protocol.errors import ChecksumMismatch, CrossedBook, DigestMismatch, InvalidMessage, SequenceGap

cdef extern from "zlib.h" nogil:
    unsigned long crc32(unsigned long crc, const unsigned char *buf, unsigned int length)

cdef extern from *:
    """
    #ifndef COMPILED_BOOK_SOURCE_SHA256
    #define COMPILED_BOOK_SOURCE_SHA256 ""
    #endif
    """
    const char *COMPILED_BOOK_SOURCE_SHA256

SOURCE_SHA256 = COMPILED_BOOK_SOURCE_SHA256.decode("ascii")
"""The SHA-256 of the ``.pyx`` this module was built from (set by setup.py): a stale build is told by it."""

cdef enum:
    TEXT_MAX = 48  # "-9223372036854775808:-9223372036854775808" is 41 bytes; copied whole (a fixed-size copy)
    CHECKSUM_LEVELS = 10
    SIDE_TEXT_MAX = CHECKSUM_LEVELS * (TEXT_MAX + 1) + 1  # a side's checksummed levels' texts, "," and "|"
    # (each text is copied as TEXT_MAX bytes, not its length: a fixed-size copy is a few moves, a sized one
    # a "rep movs" whose start-up cost was most of the checksum's)
cdef long long KEY_MIN = LLONG_MIN

cdef struct Level:
    long long size
    uint32_t term  # CRC32 of the side's letter and the text: the level's term of the book digest
    unsigned char length
    char text[TEXT_MAX]  # LEVEL_TEXT: "<price_ticks>:<size_lots>"

cdef struct Undo:
    bint bid
    bint existed
    long long key
    Level level

ctypedef cmap[long long, Level] Side_t

cdef uint32_t BID_SEED = crc32(0, <const unsigned char *>b"b", 1)
cdef uint32_t ASK_SEED = crc32(0, <const unsigned char *>b"a", 1)
cdef int MAX_DEPTH = 100


cdef inline int write_int(char *out, long long value) noexcept nogil:
    """``value`` in base-10 ASCII at ``out``; the number of bytes written."""
    cdef char digits[24]
    cdef int n = 0, length = 0
    cdef unsigned long long magnitude
    if value < 0:
        out[0] = 45  # "-"
        length = 1
        magnitude = <unsigned long long>(-(value + 1)) + 1
    else:
        magnitude = <unsigned long long>value
    while True:
        digits[n] = 48 + <char>(magnitude % 10)
        n += 1
        magnitude //= 10
        if magnitude == 0:
            break
    while n:
        n -= 1
        out[length] = digits[n]
        length += 1
    return length


cdef inline void fill(Level *level, long long price, long long size, uint32_t seed) noexcept nogil:
    """A level's size, text and digest term."""
    cdef int length = write_int(level.text, price)
    level.text[length] = 58  # ":"
    length += 1
    length += write_int(level.text + length, size)
    level.length = <unsigned char>length
    level.size = size
    level.term = <uint32_t>crc32(seed, <const unsigned char *>level.text, length)


cdef inline int side_text(Side_t *levels, char *out, int n, long long *edge, bint *full) noexcept nogil:
    """The texts of a side's first ``n`` levels joined by "," at ``out``; its length. The last one's key goes
    in ``edge`` and whether there were ``n`` of them in ``full``."""
    cdef Side_t.iterator it = levels.begin()
    cdef Side_t.iterator end = levels.end()
    cdef int i = 0, length = 0
    while i < n and it != end:
        if i:
            out[length] = 44  # ","
            length += 1
        memcpy(out + length, deref(it).second.text, TEXT_MAX)
        length += deref(it).second.length
        edge[0] = deref(it).first
        inc(it)
        i += 1
    full[0] = i == n
    return length


cdef inline long long as_int64(object value, object instrument_id, object sequence, str what) except? -1:
    if not PyLong_Check(value):
        raise InvalidMessage(instrument_id, sequence, f"{what} {value!r} is not an integer")
    try:
        return <long long>value
    except OverflowError:
        raise InvalidMessage(instrument_id, sequence, f"{what} {value} is out of the wire's int64 range") from None


cdef inline int side_of(object side) except 0:
    """1 (bid) or 2 (ask) for the wire's side numbers (``Side`` or a plain int); -1 for anything else."""
    cdef long long number
    if PyLong_Check(side):
        try:
            number = <long long>side
        except OverflowError:
            return -1
        return <int>number if number == 1 or number == 2 else -1
    if side == 1:
        return 1
    if side == 2:
        return 2
    return -1


cdef class OrderBook:
    """One instrument's price-level book (see :class:`feed_server.protocol.book.OrderBook`, whose API this is).

    ``depth`` is the number of levels per side the book is fed with; it decides how many levels the checksum
    covers: ``min(10, depth)``.
    """

    cdef Side_t _bids
    cdef Side_t _asks
    cdef vector[Undo] _undo
    cdef readonly str instrument_id
    cdef readonly int depth
    cdef readonly int checksum_levels
    cdef public object sequence
    cdef uint32_t _digest
    # The checksum, and per side whether a change reached its checksummed levels since (dirty), the key of its
    # last one (edge) and whether it had all of them (full).
    cdef uint32_t _value
    cdef uint32_t _bid_crc  # CRC32 of the bids' text and the "|"
    cdef char _bid_text[SIDE_TEXT_MAX]
    cdef char _ask_text[SIDE_TEXT_MAX]
    cdef int _bid_length
    cdef int _ask_length
    cdef bint _bid_dirty
    cdef bint _ask_dirty
    cdef bint _bid_full
    cdef bint _ask_full
    cdef long long _bid_edge
    cdef long long _ask_edge

    def __init__(self, instrument_id: str, depth: int = MAX_DEPTH) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.instrument_id = instrument_id
        self.depth = depth
        self.checksum_levels = min(CHECKSUM_LEVELS, depth)
        self.sequence = None
        self._digest = 0
        self._bid_dirty = self._ask_dirty = True

    # ----------------------------------------------------------------- reading
    def best_bid(self):
        """(price, size) of the highest bid, or None."""
        if self._bids.empty():
            return None
        return -deref(self._bids.begin()).first, deref(self._bids.begin()).second.size

    def best_ask(self):
        """(price, size) of the lowest ask, or None."""
        if self._asks.empty():
            return None
        return deref(self._asks.begin()).first, deref(self._asks.begin()).second.size

    def spread(self):
        """Best ask minus best bid in ticks, or None when a side is empty."""
        if self._bids.empty() or self._asks.empty():
            return None
        return <object>deref(self._asks.begin()).first + <object>deref(self._bids.begin()).first

    def mid(self):
        """Mid price in ticks (may end in .5), or None when a side is empty."""
        if self._bids.empty() or self._asks.empty():
            return None
        return (<object>deref(self._asks.begin()).first - <object>deref(self._bids.begin()).first) / 2

    def bids(self, n=None):
        """The top n bid levels (all when n is None), best (highest) first."""
        return _levels(&self._bids, -1, n)

    def asks(self, n=None):
        """The top n ask levels (all when n is None), best (lowest) first."""
        return _levels(&self._asks, 1, n)

    def top(self, side, n=None):
        """The top n levels of one side, best first."""
        return self.bids(n) if side == 1 else self.asks(n)

    def size_at(self, side, price) -> int:
        """The total size resting at a price (0 when there is no level)."""
        cdef long long key
        try:
            key = <long long>price
        except (OverflowError, TypeError):
            return 0
        cdef Side_t *levels = &self._bids if side == 1 else &self._asks
        if side == 1:
            if key == KEY_MIN:
                return 0
            key = -key
        it = levels.find(key)
        if it == levels.end():
            return 0
        return deref(it).second.size

    def level_count(self, side) -> int:
        return self._bids.size() if side == 1 else self._asks.size()

    def checksum(self) -> int:
        """The checksum of the book as it is now (see feed_server.protocol.checksum)."""
        return self._checksum()

    def digest(self) -> int:
        """The book digest of every level the book holds (see feed_server.protocol.checksum)."""
        return self._digest

    def is_crossed(self) -> bool:
        return (
            not self._bids.empty() and not self._asks.empty()
            and -deref(self._bids.begin()).first >= deref(self._asks.begin()).first
        )

    def __eq__(self, other):
        """The same instrument and the same levels, whichever implementation ``other`` is (the pure book's
        ``==`` defers to this one for a compiled book)."""
        if not isinstance(other, (OrderBook, PureOrderBook)):
            return NotImplemented
        return (
            self.instrument_id == other.instrument_id
            and self.bids() == other.bids()
            and self.asks() == other.asks()
        )

    __hash__ = None

    def __repr__(self) -> str:
        return (
            f"OrderBook({self.instrument_id!r}, seq={self.sequence}, "
            f"bid={self.best_bid()}, ask={self.best_ask()}, levels={self._bids.size()}/{self._asks.size()})"
        )

    cdef uint32_t _checksum(self) noexcept:
        """The checksum: a side's text is written again from its levels' texts only when a change reached its
        checksummed levels (dirty); the asks' part is chained after the bids' (and the "|")."""
        cdef int n = self.checksum_levels
        if self._bid_dirty:
            self._bid_length = side_text(&self._bids, self._bid_text, n, &self._bid_edge, &self._bid_full)
            self._bid_text[self._bid_length] = 124  # "|"
            self._bid_crc = <uint32_t>crc32(0, <const unsigned char *>self._bid_text, self._bid_length + 1)
        if self._ask_dirty:
            self._ask_length = side_text(&self._asks, self._ask_text, n, &self._ask_edge, &self._ask_full)
        if self._bid_dirty or self._ask_dirty:
            self._value = <uint32_t>crc32(self._bid_crc, <const unsigned char *>self._ask_text, self._ask_length)
            self._bid_dirty = self._ask_dirty = False
        return self._value

    # ----------------------------------------------------------------- writing, unchecked
    def set_level(self, side, price, size) -> None:
        """Set one level without any check (the simulator's own fast path). Size 0 removes it."""
        cdef bint bid = side == 1
        cdef long long p = as_int64(price, self.instrument_id, self.sequence, "price")
        cdef long long s = as_int64(size, self.instrument_id, self.sequence, "size")
        if bid and p == KEY_MIN:
            raise InvalidMessage(self.instrument_id, self.sequence, f"price {price} is out of range")
        cdef long long key = -p if bid else p
        cdef Side_t *levels = &self._bids if bid else &self._asks
        self._change(bid, key, p, s, False, levels.find(key))

    def clear(self) -> None:
        self._bids.clear()
        self._asks.clear()
        self._digest = 0
        self._bid_dirty = self._ask_dirty = True
        self.sequence = None

    cdef inline void _change(
        self, bint bid, long long key, long long price, long long size, bint log, Side_t.iterator it
    ) noexcept:
        """Set the level at ``key`` (``it``: found there, or the side's end) to ``size`` (0 removes it), keeping the
        digest and the checksum's marks; with ``log`` the old level goes on the undo log."""
        cdef Side_t *levels = &self._bids if bid else &self._asks
        cdef bint existed = it != levels.end()
        cdef Undo undo
        cdef Level level
        if log:
            undo.bid = bid
            undo.existed = existed
            undo.key = key
            if existed:
                undo.level = deref(it).second
            self._undo.push_back(undo)
        if bid:
            if not self._bid_dirty and (not self._bid_full or key <= self._bid_edge):
                self._bid_dirty = True
        elif not self._ask_dirty and (not self._ask_full or key <= self._ask_edge):
            self._ask_dirty = True
        if existed:
            self._digest -= deref(it).second.term
            if size:
                fill(&deref(it).second, price, size, BID_SEED if bid else ASK_SEED)
                self._digest += deref(it).second.term
            else:
                levels.erase(it)
        elif size:
            fill(&level, price, size, BID_SEED if bid else ASK_SEED)
            self._digest += level.term
            levels[0][key] = level

    cdef void _roll_back(self, uint32_t digest) noexcept:
        """Undo the logged changes, newest first."""
        cdef Undo *undo
        cdef Side_t *levels
        while not self._undo.empty():
            undo = &self._undo.back()
            levels = &self._bids if undo.bid else &self._asks
            if undo.existed:
                levels[0][undo.key] = undo.level
            else:
                levels.erase(undo.key)
            self._undo.pop_back()
        self._digest = digest
        self._bid_dirty = self._ask_dirty = True

    # ----------------------------------------------------------------- writing, checked
    def apply_snapshot(self, sequence, bids, asks, checksum=None, digest=None) -> None:
        """Replace the whole book. Refuses (and keeps the old book) a crossed or mismatching snapshot."""
        cdef Side_t new_bids, new_asks
        cdef Level level
        cdef long long p, s
        cdef uint32_t total = 0
        iid = self.instrument_id
        for price, size in bids:
            p = as_int64(price, iid, sequence, "price")
            s = as_int64(size, iid, sequence, "size")
            if s <= 0:
                raise InvalidMessage(iid, sequence, f"snapshot bid {price} has size {size}")
            if p == KEY_MIN:
                raise InvalidMessage(iid, sequence, f"price {price} is out of range")
            fill(&level, p, s, BID_SEED)
            new_bids[-p] = level
        for price, size in asks:
            p = as_int64(price, iid, sequence, "price")
            s = as_int64(size, iid, sequence, "size")
            if s <= 0:
                raise InvalidMessage(iid, sequence, f"snapshot ask {price} has size {size}")
            fill(&level, p, s, ASK_SEED)
            new_asks[p] = level
        if not new_bids.empty() and not new_asks.empty():
            if -deref(new_bids.begin()).first >= deref(new_asks.begin()).first:
                raise CrossedBook(iid, sequence, -deref(new_bids.begin()).first, deref(new_asks.begin()).first)
        for item in new_bids:
            total += item.second.term
        for item in new_asks:
            total += item.second.term
        if digest is not None and total != digest:
            raise DigestMismatch(iid, sequence, digest, total)
        self._bids.swap(new_bids)
        self._asks.swap(new_asks)
        self._bid_dirty = self._ask_dirty = True
        cdef uint32_t computed
        if checksum is not None:
            computed = self._checksum()
            if computed != checksum:
                self._bids.swap(new_bids)
                self._asks.swap(new_asks)
                self._bid_dirty = self._ask_dirty = True
                raise ChecksumMismatch(iid, sequence, checksum, computed)
        self._digest = total
        self.sequence = sequence

    def apply_update(self, sequence, changes, checksum=None, digest=None) -> int:
        """Apply one message's level changes together; return how many levels they changed (see
        :meth:`feed_server.protocol.book.OrderBook.apply_update`: the same checks, in the same order)."""
        return self._apply(sequence, changes, checksum, digest, False)

    def apply_wire_update(self, sequence, changes, checksum=None, digest=None) -> int:
        """:meth:`apply_update` for the wire's level changes as decoded (their ``side``, ``price_ticks`` and
        ``size_lots`` read where they are: no tuple per change)."""
        return self._apply(sequence, changes, checksum, digest, True)

    cdef object _apply(self, sequence, changes, checksum, digest, bint wire):
        previous = self.sequence
        if previous is None or sequence != previous + 1:
            self._check_next(sequence)
        cdef uint32_t before = self._digest
        cdef int s
        cdef long long p, z, key, old
        cdef Side_t *levels
        cdef Side_t.iterator it
        cdef uint32_t computed
        cdef size_t changed
        iid = self.instrument_id
        self._undo.clear()
        try:
            for change in changes:
                if wire:
                    side = change.side
                    price = change.price_ticks
                    size = change.size_lots
                elif PyTuple_Check(change):  # a LevelChange or a plain triple
                    if PyTuple_GET_SIZE(change) != 3:
                        raise ValueError(f"a level change is (side, price, size), got {change!r}")
                    side = <object>PyTuple_GET_ITEM(change, 0)
                    price = <object>PyTuple_GET_ITEM(change, 1)
                    size = <object>PyTuple_GET_ITEM(change, 2)
                else:
                    side, price, size = change
                s = side_of(side)
                if s == -1:
                    raise InvalidMessage(iid, sequence, f"unknown side {side!r}")
                p = as_int64(price, iid, sequence, "price")
                z = as_int64(size, iid, sequence, "size")
                if s == 1:
                    if p == KEY_MIN:
                        raise InvalidMessage(iid, sequence, f"price {price} is out of range")
                    levels, key = &self._bids, -p
                else:
                    levels, key = &self._asks, p
                it = levels.find(key)
                old = 0 if it == levels.end() else deref(it).second.size
                if old == z:
                    continue
                if z < 0:
                    raise InvalidMessage(iid, sequence, f"negative size {size} at {price}")
                self._change(s == 1, key, p, z, True, it)
            if not self._bids.empty() and not self._asks.empty():
                if -deref(self._bids.begin()).first >= deref(self._asks.begin()).first:
                    raise CrossedBook(iid, sequence, -deref(self._bids.begin()).first, deref(self._asks.begin()).first)
            if checksum is not None:
                computed = self._checksum()
                if computed != checksum:
                    raise ChecksumMismatch(iid, sequence, checksum, computed)
            if digest is not None and self._digest != digest:
                raise DigestMismatch(iid, sequence, digest, self._digest)
        except BaseException:
            self._roll_back(before)
            raise
        changed = self._undo.size()
        self._undo.clear()
        self.sequence = sequence
        return changed

    def apply_heartbeat(self, sequence, checksum=None, digest=None) -> None:
        """A heartbeat moves the sequence on and re-states the checksum and the digest."""
        previous = self.sequence
        if previous is None or sequence != previous + 1:
            self._check_next(sequence)
        cdef uint32_t computed
        if checksum is not None:
            computed = self._checksum()
            if computed != checksum:
                raise ChecksumMismatch(self.instrument_id, sequence, checksum, computed)
        if digest is not None and self._digest != digest:
            raise DigestMismatch(self.instrument_id, sequence, digest, self._digest)
        self.sequence = sequence

    def _check_next(self, sequence) -> None:
        if self.sequence is None:
            raise InvalidMessage(self.instrument_id, sequence, "no snapshot applied yet")
        if sequence != self.sequence + 1:
            raise SequenceGap(self.instrument_id, self.sequence + 1, sequence)


cdef list _levels(Side_t *levels, int sign, object n):
    """A side's first ``n`` levels (all when None) as (price, size), best first."""
    cdef Py_ssize_t count = levels.size() if n is None else min(<Py_ssize_t>max(n, 0), <Py_ssize_t>levels.size())
    cdef list out = []
    cdef Side_t.iterator it = levels.begin()
    cdef Py_ssize_t i
    for i in range(count):
        out.append((sign * deref(it).first, deref(it).second.size))
        inc(it)
    return out
