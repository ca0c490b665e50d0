"""The writer of test_cifs_persistent.py: one open, a known pattern, fsync.

    python cifs_writer.py MODE FILE SIZE CHUNK SEED PROGRESS [PAUSE_S]

Opens FILE once and writes SIZE bytes of ``random.Random(SEED)`` data in
CHUNK-byte writes (PAUSE_S seconds apart, 0 by default: a paced writer
spans an event injected while it runs), then fsyncs and closes it.  MODE ``direct`` opens it
with O_DIRECT, so that every write is an SMB2 WRITE on the wire when it is
issued, and fsyncs at the end.  MODE ``buffered`` writes into the page
cache (a write-caching lease keeps it there), appends ``written`` to
PROGRESS, waits until PROGRESS.go exists, and then fsyncs: the kernel's
writeback sends the SMB2 WRITEs then.

After every write, and after the fsync and the close, it appends ``KEY
MONOTONIC_TIME`` to PROGRESS.  Any error (EIO from a hard mount that lost
its handle, a short write) is a traceback and exit 1.  Stdlib only: it
starts in ~1.5 s under TCG.
"""

import mmap
import os
import random
import sys
import time

MODES = {"direct": os.O_DIRECT, "buffered": 0}


PATTERN_BLOCK = 64 << 20           # randbytes takes at most 2**31 - 1 bits at once


def pattern(size: int, seed: int) -> bytes:
    generator = random.Random(seed)
    return b"".join(generator.randbytes(min(PATTERN_BLOCK, size - offset))
                    for offset in range(0, size, PATTERN_BLOCK))


def main(argv: list[str]) -> int:
    mode, path, size, chunk, seed, progress_path = argv[0], argv[1], int(argv[2]), \
        int(argv[3]), int(argv[4]), argv[5]
    pause_s = float(argv[6]) if len(argv) > 6 else 0.0
    data = pattern(size, seed)
    buffer = mmap.mmap(-1, chunk)          # page-aligned, as O_DIRECT wants
    with open(progress_path, "a", buffering=1) as progress:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | MODES[mode], 0o644)
        progress.write(f"open {time.monotonic():.6f}\n")
        try:
            for index, offset in enumerate(range(0, size, chunk)):
                buffer[:] = data[offset:offset + chunk]
                written = os.pwrite(fd, buffer, offset)
                if written != chunk:
                    raise OSError(f"short write at {offset}: {written} of {chunk} bytes")
                progress.write(f"{index} {time.monotonic():.6f}\n")
                if pause_s:
                    time.sleep(pause_s)
            if mode == "buffered":
                progress.write(f"written {time.monotonic():.6f}\n")
                go = progress_path + ".go"
                while not os.path.exists(go):
                    time.sleep(0.05)
            os.fsync(fd)
            progress.write(f"fsync {time.monotonic():.6f}\n")
        finally:
            os.close(fd)
        progress.write(f"closed {time.monotonic():.6f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
