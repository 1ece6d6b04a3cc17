"""Channel and Stream over an in-memory pair, the real QueueTransport and PipeTransport.

Every wait is on a future or a frame with a timeout as a guard; the only
"sleep" is ``asyncio.sleep(0)``, a bare yield that lets ready callbacks run.
"""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict

import pytest

from watt.channel import protocol as p
from watt.channel.endpoint import Channel, StreamClosed
from watt.channel.pipes import PipeTransport
from watt.channel.queues import QueueTransport, create_queue, destroy_queue

GUARD = 5  # seconds; only reached when a test is about to fail
MB = 1024 * 1024
SCOPE = p.encode_scope({"type": "http", "method": "POST", "path": "/upload"})


class MemoryTransport:
    """One end of an in-memory pair: frames sent in one loop turn arrive as one batch."""

    def __init__(self) -> None:
        self.peer, self.batches, self._pending, self.closed = None, [], [], False

    def start(self, on_frames, on_eof=None) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_frames, self._on_eof = on_frames, on_eof

    def send(self, frame: tuple) -> None:
        if not self.closed:
            if not self.peer._pending:
                self._loop.call_soon(self.peer._deliver)
            self.peer._pending.append(frame)

    def _deliver(self) -> None:
        frames, self._pending = self._pending, []
        if not self.closed:
            self.batches.append(frames)
            self._on_frames(frames)

    def hang_up(self) -> None:
        """The peer goes away: this end sees EOF."""
        self._on_eof()

    def close(self) -> None:
        self.closed = True


class Meter:
    """Wraps a transport: body bytes sent, sent minus credit received, and an event at ``mark``."""

    def __init__(self, transport, mark: int) -> None:
        self.transport, self.close, self.mark = transport, transport.close, mark
        self.in_flight: defaultdict[int, int] = defaultdict(int)
        self.peak = self.sent = 0
        self.reached = asyncio.Event()

    def start(self, on_frames, on_eof=None) -> None:
        def counted(frames: list) -> None:
            for frame in frames:
                if frame[0] == p.CREDIT:
                    self.in_flight[frame[1]] -= frame[2]
            on_frames(frames)

        self.transport.start(counted, on_eof)

    def send(self, frame: tuple) -> None:
        if frame[0] in (p.BODY, p.RESPONSE_BODY):
            self.sent += len(frame[2])
            self.in_flight[frame[1]] += len(frame[2])
            self.peak = max(self.peak, self.in_flight[frame[1]])
            if self.sent >= self.mark:
                self.reached.set()
        self.transport.send(frame)


async def yield_to_loop(turns: int = 100) -> None:
    """Let every ready callback and ready fd run, without any timer."""
    for _ in range(turns):
        await asyncio.sleep(0)


# -- transport pairs: (end A, end B, release) ---------------------------------------------------
def close_fd(fds: list, fd: int) -> None:
    """Close one fd of a pair now; ``release`` then skips it (no double close of a reused fd)."""
    fds.remove(fd)
    os.close(fd)


def memory_pair():
    a, b = MemoryTransport(), MemoryTransport()
    a.peer, b.peer = b, a
    return a, b, lambda: None


def queue_pair():
    q1, q2 = create_queue(), create_queue()
    fds = [*os.pipe(), *os.pipe()]  # r1, w1, r2, w2
    a = QueueTransport(send_qid=q1, recv_qid=q2, wake_send_fd=fds[1], wake_recv_fd=fds[2])
    b = QueueTransport(q2, q1, fds[3], fds[0])
    a.fds = b.fds = fds
    return a, b, lambda: [*map(os.close, fds), destroy_queue(q1), destroy_queue(q2)]


def pipe_pair(cls=PipeTransport):
    fds = [*os.pipe(), *os.pipe()]  # r1, w1, r2, w2
    a, b = cls(fds[0], fds[3]), cls(fds[2], fds[1])
    a.fds = b.fds = fds
    return a, b, lambda: [os.close(fd) for fd in fds]


PAIRS = {"memory": memory_pair, "queue": queue_pair, "pipe": pipe_pair}


def run_pair(make, body) -> None:
    """Run ``body(a, b)`` on a fresh loop; close the ends, then free fds and queues."""
    a, b, release = make()

    async def main() -> None:
        try:
            await asyncio.wait_for(body(a, b), 4 * GUARD)
        finally:
            a.close()
            b.close()

    try:
        asyncio.run(main())
    finally:
        release()


def channels(ta, tb) -> tuple[Channel, Channel, asyncio.Queue]:
    """Main-side channel on ``ta``, worker-side on ``tb``; accepted streams go to the queue."""
    main, worker = Channel(ta, p.MAIN_SIDE), Channel(tb, p.WORKER_SIDE)
    accepted: asyncio.Queue = asyncio.Queue()
    worker.on_request = lambda frame: accepted.put_nowait((frame, worker.accept_stream(frame[1])))
    main.start()
    worker.start()
    return main, worker, accepted


async def open_stream(main: Channel, accepted: asyncio.Queue):
    stream = main.open_stream()
    stream.send((p.REQUEST, stream.sid, None, SCOPE, b"", True))
    frame, peer = await asyncio.wait_for(accepted.get(), GUARD)
    assert frame == (p.REQUEST, stream.sid, None, SCOPE, b"", True)
    assert peer.sid == stream.sid
    return stream, peer


async def read_body(stream, kind: int = p.BODY) -> bytes:
    chunks = []
    while True:
        frame = await asyncio.wait_for(stream.receive(), GUARD)
        assert frame[:2] == (kind, stream.sid), p.describe(frame)
        assert len(frame[2]) <= p.CHUNK
        chunks.append(frame[2])
        if not frame[3]:
            return b"".join(chunks)
        stream.consumed(len(frame[2]))


def collect_until_stopped():
    got, done = [], asyncio.get_running_loop().create_future()

    def on_frames(frames: list) -> None:
        got.extend(frames)
        if got[-1] == (p.STOPPED, 0):
            done.set_result(None)

    return on_frames, got, done


# -- dispatch (in-memory pair) --------------------------------------------------------------------
def test_request_reaches_on_request_only_for_peer_opened_ids():
    async def body(ta, tb):
        worker = Channel(tb, p.WORKER_SIDE)
        seen, control = [], []
        worker.on_request = seen.append
        worker.on_control = control.append
        worker.start()
        ta.start(lambda frames: None)
        ta.send((p.REQUEST, 3, None, SCOPE, b"", False))  # odd: the worker's own id
        ta.send((p.BODY, 6, b"late", False))  # unknown stream
        ta.send((p.CREDIT, 8, 100))
        ta.send((p.REQUEST, 2, "b.plt.local", SCOPE, b"x", False))
        ta.send((p.STOP, 0, 2500))
        await yield_to_loop()
        assert seen == [(p.REQUEST, 2, "b.plt.local", SCOPE, b"x", False)]
        assert control == [(p.STOP, 0, 2500)]
        assert tb.batches == [[
            (p.REQUEST, 3, None, SCOPE, b"", False), (p.BODY, 6, b"late", False),
            (p.CREDIT, 8, 100), seen[0], control[0]]]

        stream = worker.accept_stream(2)
        ta.send((p.BODY, 2, b"abc", True))
        ta.send((p.REQUEST, 2, None, SCOPE, b"", False))  # a known id goes to its stream
        assert await asyncio.wait_for(stream.receive(), GUARD) == (p.BODY, 2, b"abc", True)
        assert stream.receive_nowait() == (p.REQUEST, 2, None, SCOPE, b"", False)
        stream.finish()
        assert worker.streams == {}
        ta.send((p.BODY, 2, b"after finish", False))
        ta.send((p.CANCEL, 2))
        stream.consumed(p.CREDIT_BATCH * 2)  # a finished stream returns no credit
        stream.send((p.RESPONSE_BODY, 2, b"dropped", False))  # and sends nothing
        await yield_to_loop()
        assert stream.receive_nowait() is None and len(seen) == 1
        assert ta.batches == []

    run_pair(memory_pair, body)


def test_fail_all_errors_every_stream_and_wakes_waiters():
    async def body(ta, tb):
        main, _, accepted = channels(ta, tb)
        reading, _ = await open_stream(main, accepted)
        sending, _ = await open_stream(main, accepted)
        receive = asyncio.ensure_future(reading.receive())
        send = asyncio.ensure_future(sending.send_data(p.BODY, b"x" * 2 * MB, False))
        await yield_to_loop()
        assert not receive.done() and not send.done()
        main.fail_all("WATT_TEST", "gone")
        assert main.lost and main.streams == {}
        frame = await asyncio.wait_for(receive, GUARD)
        assert frame == (p.ERROR, reading.sid, "WATT_TEST", "gone")
        with pytest.raises(StreamClosed) as info:
            await asyncio.wait_for(send, GUARD)
        assert (info.value.code, info.value.message) == ("WATT_TEST", "gone")
        assert sending.closed_by_peer == (p.ERROR, sending.sid, "WATT_TEST", "gone")

    run_pair(memory_pair, body)


HANG_UPS = {  # how end A sees its peer go away
    "memory": lambda ta: ta.hang_up(),
    "queue": lambda ta: close_fd(ta.fds, ta.fds[3]),  # B's end of A's wake-up pipe
    "pipe": lambda ta: close_fd(ta.fds, ta.fds[1]),  # B's write end, A reads the other
}


@pytest.mark.parametrize("kind", PAIRS)
def test_eof_fails_streams_and_calls_on_lost(kind):
    async def body(ta, tb):
        main, worker, accepted = channels(ta, tb)
        stream, _ = await open_stream(main, accepted)
        lost = asyncio.get_running_loop().create_future()
        main.on_lost = lambda: lost.set_result(main.lost)
        worker.send((p.READY, 0, 42, 3))  # no on_control handler: dropped
        await yield_to_loop()
        assert main.streams == {stream.sid: stream} and not lost.done()
        HANG_UPS[kind](ta)
        assert await asyncio.wait_for(lost, GUARD) is True
        frame = await asyncio.wait_for(stream.receive(), GUARD)
        assert frame[:3] == (p.ERROR, stream.sid, "WATT_WORKER_DIED")
        assert main.streams == {}

    run_pair(PAIRS[kind], body)


def test_charge_counts_against_the_window():
    async def body(ta, tb):
        main, _, accepted = channels(ta, tb)
        stream, peer = await open_stream(main, accepted)
        stream.charge(p.WINDOW)
        send = asyncio.ensure_future(stream.send_data(p.BODY, b"late", False))
        await yield_to_loop()
        assert not send.done()
        peer.consumed(p.CREDIT_BATCH)  # as if the charged bytes were read
        await asyncio.wait_for(send, GUARD)
        assert await read_body(peer) == b"late"

    run_pair(memory_pair, body)


def test_peer_error_closes_the_stream_even_with_window_left():
    async def body(ta, tb):
        main, _, accepted = channels(ta, tb)
        stream, peer = await open_stream(main, accepted)
        peer.send((p.ERROR, peer.sid, "WATT_APP_CRASHED", "boom"))
        assert (await asyncio.wait_for(stream.receive(), GUARD))[0] == p.ERROR
        with pytest.raises(StreamClosed, match="WATT_APP_CRASHED: boom"):
            await stream.send_data(p.BODY, b"x", False)
        ws, ws_peer = await open_stream(main, accepted)
        ws_peer.send((p.WS_CLOSE, ws_peer.sid, 1000, ""))
        assert (await asyncio.wait_for(ws.receive(), GUARD))[0] == p.WS_CLOSE
        await ws.wait_credit()  # a close reply may still go out after WS_CLOSE

    run_pair(memory_pair, body)


# -- flow control and ordering over every transport ------------------------------------------------
@pytest.mark.parametrize("piece", [2 * MB, 50_000], ids=["one-2MB-write", "50KB-writes"])
@pytest.mark.parametrize("kind", PAIRS)
def test_sender_blocks_at_the_window_and_finishes_once_read(kind, piece):
    payload = os.urandom(2 * MB)
    frame_size = min(piece, p.CHUNK)
    blocked_at = -(-p.WINDOW // frame_size) * frame_size  # 4 x 64 KiB, or 6 x 50 KB

    async def body(ta, tb):
        meter = Meter(ta, mark=p.WINDOW)
        main, _, accepted = channels(meter, tb)
        stream, peer = await open_stream(main, accepted)

        async def send_all() -> None:
            for i in range(0, len(payload), piece):
                await stream.send_data(p.BODY, payload[i : i + piece], i + piece < len(payload))

        send = asyncio.ensure_future(send_all())
        await asyncio.wait_for(meter.reached.wait(), GUARD)
        await yield_to_loop()
        assert not send.done()
        assert meter.sent == meter.in_flight[stream.sid] == blocked_at
        assert p.WINDOW <= blocked_at < p.WINDOW + p.CHUNK
        received = await read_body(peer)
        await asyncio.wait_for(send, GUARD)
        assert received == payload
        assert meter.sent == len(payload) and meter.peak < p.WINDOW + frame_size

    run_pair(PAIRS[kind], body)


@pytest.mark.parametrize("kind", PAIRS)
def test_cancel_while_waiting_for_credit_raises_stream_closed(kind):
    async def body(ta, tb):
        main, _, accepted = channels(ta, tb)
        stream, peer = await open_stream(main, accepted)
        send = asyncio.ensure_future(stream.send_data(p.BODY, b"x" * 2 * MB, False))
        await yield_to_loop()
        assert not send.done()
        peer.send((p.CANCEL, peer.sid))
        with pytest.raises(StreamClosed) as info:
            await asyncio.wait_for(send, GUARD)
        assert info.value.code == "WATT_STREAM_CANCELLED"

    run_pair(PAIRS[kind], body)


@pytest.mark.parametrize("kind", PAIRS)
def test_both_directions_at_once_echo(kind):
    payload = os.urandom(MB + 123)

    async def body(ta, tb):
        main, _, accepted = channels(ta, tb)
        stream, peer = await open_stream(main, accepted)

        async def echo() -> None:
            while True:
                frame = await asyncio.wait_for(peer.receive(), GUARD)
                if frame[3]:
                    peer.consumed(len(frame[2]))
                await peer.send_data(p.RESPONSE_BODY, frame[2], frame[3])
                if not frame[3]:
                    return

        tasks = [asyncio.ensure_future(echo()),
                 asyncio.ensure_future(stream.send_data(p.BODY, payload, False))]
        assert await read_body(stream, p.RESPONSE_BODY) == payload
        await asyncio.wait_for(asyncio.gather(*tasks), GUARD)

    run_pair(PAIRS[kind], body)


@pytest.mark.parametrize("kind", PAIRS)
def test_a_burst_of_frames_arrives_in_order(kind):
    async def body(ta, tb):
        on_frames, got, done = collect_until_stopped()
        tb.start(on_frames)
        ta.start(lambda frames: None)
        sent = [(p.BODY, 2, i.to_bytes(4, "big") * (i % 50), True) for i in range(3000)]
        sent += [(p.WS_MESSAGE, 4, "t\u00e9", None), (p.FATAL, 0, "C", "m", "tb", False)]
        sent.append((p.STOPPED, 0))
        for frame in sent:
            ta.send(frame)
        await asyncio.wait_for(done, GUARD)
        assert got == sent

    run_pair(PAIRS[kind], body)


# -- QueueTransport specifics ----------------------------------------------------------------------
def test_queue_burst_before_start_costs_one_wakeup_byte_and_one_batch():
    async def body(ta, tb):
        wake_r = ta.fds[0]  # B's wake-up pipe, written by A
        for i in range(1000):
            ta.send((p.CREDIT, 2, i + 1))
        assert os.read(wake_r, 65536) == b"\0"
        batches: list = []
        arrived = asyncio.Event()
        tb.start(lambda frames: (batches.append(frames), arrived.set()))
        assert batches == [[(p.CREDIT, 2, i + 1) for i in range(1000)]]  # start drains
        arrived.clear()
        for i in range(500):
            ta.send((p.CANCEL, 2 * i + 2))
        await asyncio.wait_for(arrived.wait(), GUARD)
        assert batches[1:] == [[(p.CANCEL, 2 * i + 2) for i in range(500)]]
        with pytest.raises(BlockingIOError):  # the one wake-up byte was consumed
            os.read(wake_r, 65536)

    run_pair(queue_pair, body)


# -- PipeTransport specifics -----------------------------------------------------------------------
class CountingPipe(PipeTransport):
    reads = 0

    def _read(self) -> None:
        self.reads += 1
        super()._read()


def test_pipe_carries_a_5mb_frame_across_many_reads():
    big = os.urandom(5 * MB)

    async def body(ta, tb):
        on_frames, got, done = collect_until_stopped()
        tb.start(on_frames)
        ta.start(lambda frames: None)
        ta.send((p.RESPONSE_BODY, 2, big, False))
        ta.send((p.STOPPED, 0))
        await asyncio.wait_for(ta.flush(), GUARD)
        await asyncio.wait_for(done, GUARD)
        assert got == [(p.RESPONSE_BODY, 2, big, False), (p.STOPPED, 0)]
        assert tb.reads > 5 * MB // (256 * 1024)

    run_pair(lambda: pipe_pair(CountingPipe), body)


def test_pipe_send_to_a_closed_peer_is_eof():
    async def body(ta, tb):
        eof = asyncio.get_running_loop().create_future()
        ta.start(lambda frames: None, lambda: eof.set_result(None))
        close_fd(ta.fds, ta.fds[2])  # the peer's read end: A's next write fails (EPIPE)
        ta.send((p.CANCEL, 2))
        await asyncio.wait_for(eof, GUARD)
        ta.send((p.CANCEL, 4))  # after EOF: ignored, no second on_eof

    run_pair(pipe_pair, body)


def test_pipe_frame_sent_before_start_is_delivered():
    big = b"y" * (1 * MB)

    async def body(ta, tb):
        got = asyncio.get_running_loop().create_future()
        ta.send((p.BODY, 2, big, False))  # larger than the pipe: partly buffered
        tb.start(lambda frames: got.set_result(frames))
        ta.start(lambda frames: None)
        assert await asyncio.wait_for(got, 1) == [(p.BODY, 2, big, False)]

    run_pair(pipe_pair, body)


def test_malformed_frames_are_rejected_and_logged_and_the_rest_delivered(capsys):
    async def body(ta, tb):
        main, worker, accepted = channels(ta, tb)
        stream = main.open_stream()
        # Garbage a buggy peer could send: too short, unknown stream, bad credit
        # shape; then a good REQUEST in the same batch.
        ta.send(())
        ta.send((p.BODY,))
        ta.send((p.CREDIT, 999))
        stream.send((p.REQUEST, stream.sid, None, SCOPE, b"", False))
        frame, _ = await asyncio.wait_for(accepted.get(), GUARD)
        assert frame[1] == stream.sid
        assert worker.rejected == 2  # () and (BODY,); an unknown stream is simply dropped

    run_pair(memory_pair, body)
    assert capsys.readouterr().err.count("rejected a malformed frame") == 2


def test_closing_a_transport_twice_spares_a_new_reader_on_a_reused_fd():
    """A worker's channel is closed again after its fds were freed and reused by the
    next worker's pipe: the second close must not remove the new worker's reader."""

    async def main() -> None:
        old_a, old_b, release_old = queue_pair()
        old_a.start(lambda frames: None)
        old_a.close()
        release_old()  # the fds are free: the next pair gets the same numbers
        new_a, new_b, release_new = queue_pair()
        try:
            assert old_a.wake_recv_fd in new_a.fds
            got = asyncio.get_running_loop().create_future()
            new_a.start(lambda frames: got.done() or got.set_result(frames))
            new_b.start(lambda frames: None)
            old_a.close()  # again, as a second clean-up does
            new_b.send((p.STOPPED, 0))
            assert await asyncio.wait_for(got, GUARD) == [(p.STOPPED, 0)]
        finally:
            new_a.close()
            new_b.close()
            release_new()

    asyncio.run(main())
