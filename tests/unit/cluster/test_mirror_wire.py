"""MirrorWire: one mirror connection on a thread of its own, over a real
TCP connection on 127.0.0.1.  Sends from several threads leave in counter
order; what the socket cannot take at once waits and goes out later, both
directions at the same time (two nodes streaming snapshots at each other
must not deadlock); close from any thread ends it once."""

import socket
import threading

from smbcad.cluster.mirror_proto import (
    Ack, Append, Hello, MessageReceived, MirrorConnection, PeerHello)
from smbcad.cluster.mirror_wire import MirrorWire

KEY = b"cluster-key-for-tests-0123456789"


class Collector:
    def __init__(self) -> None:
        self.events = []
        self.closed = threading.Event()
        self.closes = 0
        self.hello = threading.Event()
        self.lock = threading.Lock()

    def wire_events(self, wire, events) -> None:
        with self.lock:
            self.events.extend(events)
        if any(isinstance(event, PeerHello) for event in events):
            self.hello.set()

    def wire_closed(self, wire) -> None:
        self.closes += 1
        self.closed.set()

    def messages(self):
        with self.lock:
            return [event.message for event in self.events if isinstance(event, MessageReceived)]


def pair():
    listener = socket.create_server(("127.0.0.1", 0))
    dialed = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    listener.close()
    wires, handlers = [], []
    for name, sock in (("a", dialed), ("b", accepted)):
        handler = Collector()
        conn = MirrorConnection(KEY, Hello(name, name.encode() * 32, 1))
        wire = MirrorWire(sock, conn, handler, name=f"test-wire-{name}")
        wires.append(wire)
        handlers.append(handler)
    for wire in wires:
        wire.start()
    for handler in handlers:
        assert handler.hello.wait(10)
    return wires, handlers


def big_append(mseq: int) -> Append:
    return Append("aggr1", 1, mseq, ((mseq, bytes([mseq % 251]) * 200_000),))


def test_both_sides_stream_more_than_the_sockets_hold_and_everything_arrives_in_order(
        monkeypatch):
    flushes = []
    flush = MirrorWire._flush
    monkeypatch.setattr(MirrorWire, "_flush", lambda wire: flushes.append(1) or flush(wire))
    (a, b), (at_a, at_b) = pair()
    try:
        count = 60                                       # 12 MB each way
        senders = [threading.Thread(target=lambda w=w: [w.send(big_append(n))
                                                        for n in range(1, count + 1)])
                   for w in (a, b)]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(30)
        for handler in (at_a, at_b):
            for _ in range(300):
                if len(handler.messages()) == count:
                    break
                threading.Event().wait(0.05)
            got = handler.messages()
            assert [m.mseq for m in got] == list(range(1, count + 1))
            assert all(m.ops[0][1] == bytes([m.mseq % 251]) * 200_000 for m in got)
        assert flushes, "the sockets took everything at once: nothing was buffered"
        assert not any(a.conn.stats.dropped.values())
        assert not any(b.conn.stats.dropped.values())
    finally:
        a.close()
        b.close()
        a.join(5)
        b.join(5)


def test_frames_sent_from_several_threads_keep_their_counters_in_order():
    (a, b), (_, at_b) = pair()
    try:
        threads = [threading.Thread(target=lambda base=base: [
            a.send(Ack("aggr1", 1, base, n)) for n in range(500)]) for base in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        for _ in range(200):
            if len(at_b.messages()) == 2000:
                break
            threading.Event().wait(0.05)
        assert len(at_b.messages()) == 2000
        assert not any(b.conn.stats.dropped.values())
        for base in range(4):
            assert [m.mseq for m in at_b.messages() if m.generation == base] == list(range(500))
    finally:
        a.close()
        b.close()
        a.join(5)
        b.join(5)


def test_close_from_another_thread_ends_both_sides_once():
    (a, b), (at_a, at_b) = pair()
    exited = []
    a._on_exit = lambda: exited.append("a")
    threading.Thread(target=a.close).start()
    assert at_a.closed.wait(5) and at_b.closed.wait(5)
    a.join(5)
    b.join(5)
    assert at_a.closes == at_b.closes == 1 and exited == ["a"]
    assert not a.send(Ack("aggr1", 1, 1, 1)) and not b.send(Ack("aggr1", 1, 1, 1))
    a.close()                                            # again: nothing happens


def test_nothing_is_sent_before_the_handshake():
    listener = socket.create_server(("127.0.0.1", 0))
    dialed = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    listener.close()
    handler = Collector()
    wire = MirrorWire(dialed, MirrorConnection(KEY, Hello("a", b"a" * 32, 1)), handler,
                      name="test-wire-alone")
    wire.start()
    try:
        assert not wire.send(Ack("aggr1", 1, 1, 1))        # the peer's HELLO has not come
    finally:
        wire.close()
        wire.join(5)
        accepted.close()
