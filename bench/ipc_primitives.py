"""What the multi-process design of docs/multicore.md stands on, measured:
a Unix datagram / seqpacket round trip between two Python processes, passing
a socket with SCM_RIGHTS, and LMDB read and write transactions (one and two
writer processes).  Not a test.

  /opt/smbca/test-venv/bin/python bench/ipc_primitives.py
"""

import array
import multiprocessing
import os
import socket
import tempfile
import time

import lmdb

ROUNDS = 20_000
FD_ROUNDS = 5_000
MESSAGE = b"x" * 64
RECORD = b"r" * 96
MAP_SIZE = 1 << 30


def _echo(sock: socket.socket) -> None:
    while (data := sock.recv(256)) != b"quit":
        sock.send(data)


def round_trip(kind: int) -> tuple[float, float]:
    """(wall µs, caller CPU µs) per request/answer between two processes."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, kind)
    peer = multiprocessing.Process(target=_echo, args=(theirs,))
    peer.start()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(ROUNDS):
        mine.send(MESSAGE)
        mine.recv(256)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    mine.send(b"quit")
    peer.join()
    return wall / ROUNDS * 1e6, cpu / ROUNDS * 1e6


def _take_fds(sock: socket.socket) -> None:
    while True:
        message, ancillary, _, _ = sock.recvmsg(64, socket.CMSG_SPACE(4))
        if message == b"quit":
            return
        for _, _, data in ancillary:
            os.close(array.array("i", data[:4])[0])
        sock.send(b"k")


def pass_socket() -> float:
    """µs to hand a connected socket (and 64 bytes) to another process."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    peer = multiprocessing.Process(target=_take_fds, args=(theirs,))
    peer.start()
    client, _server = socket.socketpair()
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [client.fileno()]))]
    wall = time.perf_counter()
    for _ in range(FD_ROUNDS):
        mine.sendmsg([MESSAGE], rights)
        mine.recv(8)
    wall = time.perf_counter() - wall
    mine.send(b"quit")
    peer.join()
    return wall / FD_ROUNDS * 1e6


def _open(path: str) -> lmdb.Environment:
    return lmdb.open(path, map_size=MAP_SIZE, sync=False, metasync=False, writemap=True)


def _write_loop(path: str, results) -> None:
    env = _open(path)
    prefix = os.getpid().to_bytes(4, "little")
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(ROUNDS):
        with env.begin(write=True) as txn:      # a share-mode check: read, change, write
            key = prefix + (i % 1000).to_bytes(4, "little")
            txn.get(key)
            txn.put(key, RECORD)
    results.put(((time.perf_counter() - wall) / ROUNDS * 1e6,
                 (time.process_time() - cpu) / ROUNDS * 1e6))


def lmdb_writes(path: str, writers: int) -> list[tuple[float, float]]:
    results = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_write_loop, args=(path, results))
             for _ in range(writers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    return [results.get() for _ in procs]


def lmdb_read(path: str) -> float:
    env = _open(path)
    wall = time.perf_counter()
    for i in range(ROUNDS):
        with env.begin() as txn:
            txn.get(b"abcd" + (i % 1000).to_bytes(4, "little"))
    return (time.perf_counter() - wall) / ROUNDS * 1e6


def main() -> None:
    for name, kind in (("SOCK_DGRAM", socket.SOCK_DGRAM), ("SOCK_SEQPACKET", socket.SOCK_SEQPACKET)):
        wall, cpu = round_trip(kind)
        print(f"Unix {name} round trip: {wall:.1f} µs wall, {cpu:.1f} µs CPU on the caller")
    print(f"socket passed with SCM_RIGHTS and acknowledged: {pass_socket():.1f} µs")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as path:
        for writers in (1, 2):
            figures = ", ".join(f"{wall:.1f} µs wall / {cpu:.1f} µs CPU"
                                for wall, cpu in lmdb_writes(path, writers))
            print(f"LMDB write transaction (get + put), {writers} writer process(es): {figures}")
        print(f"LMDB read transaction (get): {lmdb_read(path):.2f} µs")


if __name__ == "__main__":
    main()
