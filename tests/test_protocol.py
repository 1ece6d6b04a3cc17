"""The sans-IO channel protocol and the pipe frame codec: pure tests, no event loop."""

from __future__ import annotations

import marshal
import struct

import pytest

from watt.channel import protocol as p
from watt.channel.pipes import FrameCodec

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the test extra
    given = None

HTTP_SCOPE = {
    "type": "http",
    "http_version": "2",
    "method": "PATCH",
    "scheme": "https",
    "path": "/caf\u00e9/x",
    "raw_path": b"/caf%C3%A9/x",
    "query_string": b"a=1&b=%20",
    "root_path": "/api",
    "headers": [(b"host", b"b.plt.local"), (b"x-dup", b"1"), (b"x-dup", b"2")],
    "client": ("10.0.0.7", 51234),
    "server": ("127.0.0.1", 3042),
}
WS_SCOPE = {
    "type": "websocket",
    "http_version": "1.1",
    "scheme": "wss",
    "path": "/ws",
    "raw_path": None,
    "query_string": b"",
    "root_path": "",
    "headers": [(b"sec-websocket-protocol", b"chat, superchat")],
    "client": None,
    "server": ("/run/watt.sock", None),
    "subprotocols": ["chat", "superchat"],
}
# One frame of each layout in the protocol docstring.
FRAMES = [
    (p.REQUEST, 2, "b.plt.local", p.encode_scope(HTTP_SCOPE), b"first", True),
    (p.REQUEST, 4, None, p.encode_scope(WS_SCOPE), b"", False),
    (p.BODY, 2, b"\x00\xff" * 100, False),
    (p.RESPONSE_START, 2, 200, (b"content-type", b"text/plain"), b"hello", True),
    (p.RESPONSE_BODY, 2, b"", False),
    (p.CREDIT, 3, p.CREDIT_BATCH),
    (p.CANCEL, 5),
    (p.ERROR, 7, "WATT_APP_CRASHED", "boom \u2603"),
    (p.WS_ACCEPT, 4, "chat", ()),
    (p.WS_MESSAGE, 4, "text \u00e9", None),
    (p.WS_MESSAGE, 4, None, b"\x01\x02"),
    (p.WS_CLOSE, 4, 1001, "going away"),
    (p.READY, 0, 12345, 7),
    (p.STOP, 0, 30_000),
    (p.STOPPED, 0),
    (p.FATAL, 0, "WATT_APP_IMPORT_FAILED", "no module x", "Traceback...\n", True),
]


# -- scopes -----------------------------------------------------------------------------
def test_http_scope_round_trip_keeps_every_field():
    encoded = p.encode_scope(HTTP_SCOPE)
    assert len(encoded) == 12
    scope = p.decode_scope(encoded)
    assert scope == {
        **HTTP_SCOPE,
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "client": ["10.0.0.7", 51234],
        "server": ["127.0.0.1", 3042],
        "extensions": {},
    }
    assert "subprotocols" not in scope


def test_websocket_scope_round_trip_with_no_client_and_no_raw_path():
    scope = p.decode_scope(p.encode_scope(WS_SCOPE))
    assert scope == {
        **WS_SCOPE,
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "server": ["/run/watt.sock", None],
        "extensions": {},
    }
    assert scope["raw_path"] is None and scope["client"] is None
    assert "method" not in scope


def test_scope_defaults_for_a_minimal_scope():
    http = p.decode_scope(p.encode_scope({"type": "http", "path": "/"}))
    assert (http["method"], http["scheme"], http["http_version"]) == ("GET", "http", "1.1")
    assert (http["query_string"], http["root_path"], http["headers"]) == (b"", "", [])
    assert http["raw_path"] is None and http["client"] is None and http["server"] is None
    ws = p.decode_scope(p.encode_scope({"type": "websocket", "path": "/"}))
    assert (ws["scheme"], ws["subprotocols"]) == ("ws", [])


def test_encoded_scope_holds_only_shareable_types():
    scope = dict(HTTP_SCOPE, raw_path=bytearray(b"/x"), query_string=memoryview(b"q=1"),
                 headers=[[bytearray(b"a"), b"1"]], client=["h", "80"], state={"x": object()})
    encoded = p.encode_scope(scope)
    assert encoded[5] == b"/x" and type(encoded[5]) is bytes
    assert type(encoded[6]) is bytes and encoded[8] == (b"a", b"1")
    assert encoded[9] == ("h", 80)  # the port becomes an int; app state never crosses
    assert marshal.loads(marshal.dumps(encoded)) == encoded


@pytest.mark.parametrize("kind", ["lifespan", "custom"])
def test_encode_scope_rejects_other_scope_types(kind):
    with pytest.raises(p.ProtocolError, match=kind):
        p.encode_scope({"type": kind, "path": "/"})


def test_decode_scope_rejects_wrong_field_count():
    with pytest.raises(p.ProtocolError, match="11 fields, want 12"):
        p.decode_scope(p.encode_scope(HTTP_SCOPE)[:-1])


# -- headers ------------------------------------------------------------------------------
def test_headers_flatten_and_pair():
    headers = [(b"a", b"1"), (b"a", b"2"), (b"b", b"")]
    flat = p.flatten_headers(headers)
    assert flat == (b"a", b"1", b"a", b"2", b"b", b"")
    assert p.pair_headers(flat) == headers
    assert p.flatten_headers([]) == () and p.pair_headers(()) == []


def test_pair_headers_rejects_odd_length():
    with pytest.raises(p.ProtocolError, match="odd"):
        p.pair_headers((b"a", b"1", b"b"))


# -- stream ids ---------------------------------------------------------------------------
def test_stream_ids_parity_per_side():
    main, worker = p.StreamIds(p.MAIN_SIDE), p.StreamIds(p.WORKER_SIDE)
    assert [main.next() for _ in range(4)] == [2, 4, 6, 8]
    assert [worker.next() for _ in range(4)] == [1, 3, 5, 7]


def test_opened_by():
    assert [p.opened_by(sid) for sid in (1, 2, 3, 4, 1001, 1002)] == [
        p.WORKER_SIDE, p.MAIN_SIDE, p.WORKER_SIDE, p.MAIN_SIDE, p.WORKER_SIDE, p.MAIN_SIDE]
    for side in (p.MAIN_SIDE, p.WORKER_SIDE):
        ids = p.StreamIds(side)
        assert all(p.opened_by(ids.next()) == side for _ in range(10))


# -- flow control -------------------------------------------------------------------------
def test_send_window_allows_one_chunk_of_overshoot():
    window = p.SendWindow()
    assert window.available == p.WINDOW and window.can_send()
    window.consume(p.WINDOW - 1)
    assert window.can_send()  # one byte left: one more chunk may go
    window.consume(p.CHUNK)
    assert not window.can_send() and window.available == 1 - p.CHUNK
    window.grant(p.CHUNK - 1)
    assert not window.can_send()  # exactly zero is not enough
    window.grant(1)
    assert window.can_send() and window.available == 1


@pytest.mark.parametrize("credit", [0, -1, -p.WINDOW])
def test_send_window_rejects_non_positive_credit(credit):
    window = p.SendWindow(10)
    with pytest.raises(p.ProtocolError, match="positive"):
        window.grant(credit)
    assert window.available == 10


def test_recv_window_batches_credit():
    window = p.RecvWindow()
    assert window.batch == p.CREDIT_BATCH == p.WINDOW // 4
    assert window.consumed(p.CREDIT_BATCH - 1) == 0
    assert window.consumed(2) == p.CREDIT_BATCH + 1  # everything pending goes at once
    assert window.pending == 0
    assert window.consumed(p.CHUNK) == p.CHUNK  # one full chunk reaches the batch
    assert window.consumed(10) == 0
    assert window.flush() == 10 and window.flush() == 0


def test_recv_window_credit_never_starves_a_sender():
    # Whatever the chunk sizes, a reader that consumes everything leaves less
    # than one batch uncredited, so the sender's window stays open.
    send, recv = p.SendWindow(), p.RecvWindow()
    sizes = [1, 1000, p.CHUNK, 7, p.CHUNK - 1, 3333] * 50
    for size in sizes:
        assert send.can_send()
        send.consume(size)
        credit = recv.consumed(size)
        if credit:
            send.grant(credit)
    assert send.available == p.WINDOW - recv.pending > p.WINDOW - p.CREDIT_BATCH


# -- chunks ---------------------------------------------------------------------------------
def test_split_chunks_edges():
    assert p.split_chunks(b"") == [b""]
    exact = b"x" * p.CHUNK
    assert p.split_chunks(exact) == [exact]
    over = b"a" * p.CHUNK + b"b"
    assert p.split_chunks(over) == [b"a" * p.CHUNK, b"b"]
    big = bytes(range(256)) * (5 * p.CHUNK // 256) + b"tail"
    pieces = p.split_chunks(big)
    assert len(pieces) == 6 and b"".join(pieces) == big
    assert [len(x) for x in pieces] == [p.CHUNK] * 5 + [4]
    assert all(type(x) is bytes for x in pieces)
    assert p.split_chunks(b"abcdefg", 3) == [b"abc", b"def", b"g"]


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_split_chunks_always_returns_bytes(kind):
    assert all(type(x) is bytes for x in p.split_chunks(kind(b"short body")))


# -- mesh hosts ------------------------------------------------------------------------------
@pytest.mark.parametrize(("host", "app_id"), [
    ("b.plt.local", "b"),
    ("B.PLT.Local", "b"),
    ("my-app.plt.local:3042", "my-app"),
    ("MY-APP.PLT.LOCAL:80", "my-app"),
    (".plt.local", None),
    ("plt.local", None),
    ("plt.local:80", None),
    ("example.com", None),
    ("b.plt.local.evil.com", None),
    ("bplt.local", None),
    ("localhost:3042", None),
    ("[::1]:3042", None),
    ("", None),
    (None, None),
])
def test_mesh_app_id(host, app_id):
    assert p.mesh_app_id(host) == app_id


def test_describe():
    assert p.describe((p.REQUEST, 2, None, (), b"", False)) == "REQUEST(sid=2)"
    assert p.describe((p.STOPPED, 0)) == "STOPPED(sid=0)"
    assert p.describe((99, 5)) == "kind 99(sid=5)"
    assert all(getattr(p, name) == kind for kind, name in p.KIND_NAMES.items())
    assert len(set(p.KIND_NAMES)) == 28  # kinds are distinct
    assert p.TERMINAL == {p.CANCEL, p.ERROR, p.WS_CLOSE}


# -- FrameCodec ------------------------------------------------------------------------------
STREAM = b"".join(FrameCodec.encode(f) for f in FRAMES)


def test_codec_encode_is_length_prefixed_marshal():
    data = FrameCodec.encode((p.CANCEL, 9))
    (size,) = struct.unpack("<I", data[:4])
    assert size == len(data) - 4 and marshal.loads(data[4:]) == (p.CANCEL, 9)


def test_codec_round_trip_all_at_once():
    codec = FrameCodec()
    assert codec.feed(STREAM) == FRAMES
    assert codec.buffered == 0


def test_codec_round_trip_byte_by_byte():
    codec = FrameCodec()
    out = []
    for i in range(len(STREAM)):
        out += codec.feed(STREAM[i : i + 1])
    assert out == FRAMES and codec.buffered == 0


@pytest.mark.parametrize("step", [2, 3, 5, 7, 4, 13, 97])
def test_codec_round_trip_in_odd_splits(step):
    codec = FrameCodec()
    out = []
    for i in range(0, len(STREAM), step):
        out += codec.feed(STREAM[i : i + step])
        assert codec.buffered < step + max(len(FrameCodec.encode(f)) for f in FRAMES)
    assert out == FRAMES and codec.buffered == 0


def test_codec_keeps_a_partial_frame_buffered():
    codec = FrameCodec()
    data = FrameCodec.encode((p.BODY, 2, b"x" * 1000, True))
    assert codec.feed(data[:3]) == [] and codec.buffered == 3
    assert codec.feed(data[3:-1]) == [] and codec.buffered == len(data) - 1
    assert codec.feed(data[-1:] + data[:10]) == [(p.BODY, 2, b"x" * 1000, True)]
    assert codec.buffered == 10


def test_codec_rejects_oversize_length_before_the_payload_arrives():
    codec = FrameCodec()
    with pytest.raises(ValueError, match="exceeds"):
        codec.feed(struct.pack("<I", 64 * 1024 * 1024 + 1))
    # The largest allowed frame is only waited for.
    assert FrameCodec().feed(struct.pack("<I", 64 * 1024 * 1024) + b"\0" * 10) == []


if given is not None:
    _atom = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                      st.text(max_size=20), st.binary(max_size=300))
    _frame = st.tuples(st.sampled_from(sorted(p.KIND_NAMES)), st.integers(0, 2**31),
                       st.lists(st.one_of(_atom, st.lists(_atom, max_size=4).map(tuple)),
                                max_size=5).map(tuple)).map(lambda t: (t[0], t[1], *t[2]))

    @settings(max_examples=200, deadline=None)
    @given(frames=st.lists(_frame, min_size=1, max_size=8), data=st.data())
    def test_codec_property_random_frames_random_splits(frames, data):
        stream = b"".join(FrameCodec.encode(f) for f in frames)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
        codec = FrameCodec()
        out = []
        for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            out += codec.feed(stream[start:end])
        assert out == frames and codec.buffered == 0
