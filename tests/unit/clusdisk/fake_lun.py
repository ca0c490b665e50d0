"""An in-memory model of one logical unit seen through several I_T nexuses,
written from the standards (not from our code) so that it checks our CDBs:

- SPC-2 r20 5.5.1 / 7.22 / 7.17: RESERVE(6)/RELEASE(6); a reservation blocks
  every command from other nexuses except INQUIRY and RELEASE (LIO's
  behaviour, checked in shared/lab); RELEASE from a non-holder is GOOD and
  does nothing; a LUN or target reset releases it and raises UNIT ATTENTION
  29/03 on every nexus.
- SPC-4 r17 5.7 / 6.13 / 6.14: persistent reservations (REGISTER, REGISTER
  AND IGNORE EXISTING KEY, RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT AND
  ABORT; READ KEYS, READ RESERVATION), the non-holder access rules for each
  type, PRgeneration, and UNIT ATTENTIONs 2A/03, 2A/04, 2A/05.  SPC-4 r17
  5.7.3: SPC-2 RESERVE/RELEASE conflict while registrations exist.
- Sense data is fixed format (what LIO returns by default), built here by
  hand rather than with clusdisk's helpers.

``FakeLun.ioctl(nexus)`` returns a function with ``fcntl.ioctl``'s signature
that decodes the caller's sg_io_hdr with its own ctypes layout, so
``SgDevice`` runs unchanged against it.
"""

import ctypes
import errno
import struct
from collections import deque
from dataclasses import dataclass, field

GOOD, CHECK_CONDITION, RESERVATION_CONFLICT = 0x00, 0x02, 0x18
NOT_READY, ILLEGAL_REQUEST, UNIT_ATTENTION = 0x2, 0x5, 0x6
DID_TIME_OUT, DID_TRANSPORT_DISRUPTED = 0x03, 0x0E
WRITE_EXCLUSIVE, EXCLUSIVE_ACCESS = 1, 3
REGISTRANTS_ONLY = (5, 6)
ALL_REGISTRANTS = (7, 8)
WRITE_EXCLUSIVE_TYPES = (1, 5, 7)


class SgIoHdr(ctypes.Structure):
    """struct sg_io_hdr from <scsi/sg.h>, independently of clusdisk's struct."""

    _fields_ = [("interface_id", ctypes.c_int), ("dxfer_direction", ctypes.c_int),
                ("cmd_len", ctypes.c_ubyte), ("mx_sb_len", ctypes.c_ubyte),
                ("iovec_count", ctypes.c_ushort), ("dxfer_len", ctypes.c_uint),
                ("dxferp", ctypes.c_void_p), ("cmdp", ctypes.c_void_p),
                ("sbp", ctypes.c_void_p), ("timeout", ctypes.c_uint),
                ("flags", ctypes.c_uint), ("pack_id", ctypes.c_int),
                ("usr_ptr", ctypes.c_void_p), ("status", ctypes.c_ubyte),
                ("masked_status", ctypes.c_ubyte), ("msg_status", ctypes.c_ubyte),
                ("sb_len_wr", ctypes.c_ubyte), ("host_status", ctypes.c_ushort),
                ("driver_status", ctypes.c_ushort), ("resid", ctypes.c_int),
                ("duration", ctypes.c_uint), ("info", ctypes.c_uint)]


def fixed_sense(key: int, asc: int, ascq: int) -> bytes:
    return bytes([0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0])


@dataclass
class Reply:
    status: int = GOOD
    sense: bytes = b""
    data: bytes = b""
    host_status: int = 0


CONFLICT = Reply(RESERVATION_CONFLICT)


def check(key: int, asc: int, ascq: int) -> Reply:
    return Reply(CHECK_CONDITION, fixed_sense(key, asc, ascq))


@dataclass
class FakeLun:
    nexuses: int = 2
    serial: str = "lab-lun0-quorum"
    product: str = "LAB-QUORUM"
    naa: bytes = bytes.fromhex("6001405abcdef0123456789abcdef012")
    block_size: int = 512
    blocks: int = 2048
    scsi2_holder: int | None = None
    registrations: dict = field(default_factory=dict)       # nexus -> key
    pr_holder: int | None = None
    pr_type: int = 0
    generation: int = 0
    pending_ua: dict = field(default_factory=dict)           # nexus -> deque[(asc, ascq)]
    offline: set = field(default_factory=set)
    hang_preempt_and_abort: bool = False
    # LIO with its write cache off refuses a WRITE with FUA: 24/00 invalid field in CDB.
    refuses_fua: bool = False
    journal: list = field(default_factory=list)              # (nexus, what)
    storage: dict = field(default_factory=dict)              # lba -> block

    def __post_init__(self) -> None:
        for n in range(self.nexuses):
            self.pending_ua.setdefault(n, deque())

    # -- helpers ------------------------------------------------------------

    def _ua(self, nexuses, asc: int, ascq: int) -> None:
        for n in nexuses:
            self.pending_ua[n].append((asc, ascq))

    def _others(self, nexus: int):
        return [n for n in range(self.nexuses) if n != nexus]

    def holder_key(self) -> int | None:
        return None if self.pr_holder is None else self.registrations.get(self.pr_holder)

    # -- task management ------------------------------------------------------

    def reset(self, nexus: int, kind: int) -> None:
        """SG_SCSI_RESET: DEVICE (1) or TARGET (4); BUS/HOST are refused as
        tcm_loop refuses them."""
        self.journal.append((nexus, f"reset {kind}"))
        if kind not in (1, 4):
            raise OSError(errno.EIO, "reset not supported by this fake target")
        self.scsi2_holder = None                 # SPC-2 reservations do not survive a reset
        self._ua(range(self.nexuses), 0x29, 0x03)

    # -- command execution ----------------------------------------------------

    def execute(self, nexus: int, cdb: bytes, data_out: bytes = b"", alloc: int = 0) -> Reply:
        op = cdb[0]
        self.journal.append((nexus, f"{op:02x}" + (f"/{cdb[1] & 0x1F:02x}" if op in (0x5E, 0x5F) else "")))
        if nexus in self.offline:
            return Reply(host_status=DID_TRANSPORT_DISRUPTED)
        if op not in (0x12, 0xA0, 0x03) and self.pending_ua[nexus]:
            asc, ascq = self.pending_ua[nexus].popleft()
            return check(UNIT_ATTENTION, asc, ascq)
        if (self.scsi2_holder is not None and self.scsi2_holder != nexus
                and op not in (0x12, 0x17)):
            return CONFLICT
        if self.pr_holder is not None and self.pr_holder != nexus and self._pr_blocks(nexus, cdb, data_out):
            return CONFLICT
        handler = {0x00: self._tur, 0x12: self._inquiry, 0x16: self._reserve6,
                   0x17: self._release6, 0x5E: self._pr_in, 0x5F: self._pr_out,
                   0x88: self._read16, 0x8A: self._write16, 0x9E: self._sai}.get(op)
        if handler is None:
            return check(ILLEGAL_REQUEST, 0x20, 0x00)
        return handler(nexus, cdb, data_out)

    def _pr_blocks(self, nexus: int, cdb: bytes, data_out: bytes) -> bool:
        """SPC-4 r17 5.7.1 tables 45/46: access by a nexus that does not hold
        the persistent reservation."""
        op = cdb[0]
        registered = nexus in self.registrations
        if op in (0x12, 0x5E, 0xA0, 0x03, 0x00, 0x16, 0x17):
            return False
        if op == 0x5F:
            action = cdb[1] & 0x1F
            if action in (0x00, 0x06):
                return False
            if action == 0x01:
                return self.pr_type not in ALL_REGISTRANTS
            return not registered
        if self.pr_type in REGISTRANTS_ONLY + ALL_REGISTRANTS and registered:
            return False
        if self.pr_type in WRITE_EXCLUSIVE_TYPES:
            return op in (0x8A, 0x2A, 0xAA)        # writes conflict, reads pass
        return True

    def _tur(self, nexus, cdb, data_out) -> Reply:
        return Reply()

    def _inquiry(self, nexus, cdb, data_out) -> Reply:
        evpd, page = cdb[1] & 1, cdb[2]
        alloc = struct.unpack(">H", cdb[3:5])[0]
        if not evpd:
            data = bytes([0x00, 0x00, 0x06, 0x12, 31, 0x00, 0x00, 0x02]) + \
                b"LIO-ORG " + self.product.ljust(16).encode() + b"4.0 "
        elif page == 0x00:
            data = bytes([0, 0, 0, 3, 0x00, 0x80, 0x83])
        elif page == 0x80:
            serial = self.serial.encode()
            data = bytes([0, 0x80, 0, len(serial)]) + serial
        elif page == 0x83:
            t10 = b"LIO-ORG " + self.serial.encode()
            body = (bytes([0x01, 0x03, 0, len(self.naa)]) + self.naa
                    + bytes([0x02, 0x01, 0, len(t10)]) + t10
                    + bytes([0x61, 0x94, 0, 4, 0, 0, 0, 1 + nexus]))     # relative target port
            data = bytes([0, 0x83]) + struct.pack(">H", len(body)) + body
        else:
            return check(ILLEGAL_REQUEST, 0x24, 0x00)
        return Reply(data=data[:alloc])

    def _sai(self, nexus, cdb, data_out) -> Reply:
        if cdb[1] & 0x1F != 0x10:
            return check(ILLEGAL_REQUEST, 0x24, 0x00)
        alloc = struct.unpack(">I", cdb[10:14])[0]
        data = struct.pack(">QI", self.blocks - 1, self.block_size) + bytes(20)
        return Reply(data=data[:alloc])

    def _reserve6(self, nexus, cdb, data_out) -> Reply:
        if self.registrations:                  # SPC-4 r17 5.7.3
            if self.pr_holder == nexus or (
                    nexus in self.registrations and self.pr_type in REGISTRANTS_ONLY + ALL_REGISTRANTS):
                return Reply()
            return CONFLICT
        self.scsi2_holder = nexus
        return Reply()

    def _release6(self, nexus, cdb, data_out) -> Reply:
        if self.registrations:
            if self.pr_holder == nexus or (
                    nexus in self.registrations and self.pr_type in REGISTRANTS_ONLY + ALL_REGISTRANTS):
                return Reply()
            return CONFLICT
        if self.scsi2_holder == nexus:
            self.scsi2_holder = None
        return Reply()

    def _pr_in(self, nexus, cdb, data_out) -> Reply:
        action = cdb[1] & 0x1F
        alloc = struct.unpack(">H", cdb[7:9])[0]
        if action == 0x00:
            keys = b"".join(struct.pack(">Q", k) for k in self.registrations.values())
            data = struct.pack(">II", self.generation, len(keys)) + keys
        elif action == 0x01:
            if self.pr_holder is None:
                data = struct.pack(">II", self.generation, 0)
            else:
                data = struct.pack(">IIQ4sBBH", self.generation, 16, self.holder_key(),
                                   bytes(4), 0, self.pr_type, 0)
        else:
            return check(ILLEGAL_REQUEST, 0x24, 0x00)
        return Reply(data=data[:alloc])

    def _release_pr(self, nexus: int) -> None:
        kind = self.pr_type
        self.pr_holder, self.pr_type = None, 0
        if kind in REGISTRANTS_ONLY + ALL_REGISTRANTS:
            self._ua([n for n in self.registrations if n != nexus], 0x2A, 0x04)

    def _unregister(self, nexus: int) -> None:
        del self.registrations[nexus]
        if self.pr_holder == nexus:
            self._release_pr(nexus)

    def _pr_out(self, nexus, cdb, data_out) -> Reply:
        action, scope_type = cdb[1] & 0x1F, cdb[2]
        length = struct.unpack(">I", cdb[5:9])[0]
        if length != 24 or len(data_out) != 24:
            return check(ILLEGAL_REQUEST, 0x1A, 0x00)
        if scope_type >> 4:
            return check(ILLEGAL_REQUEST, 0x24, 0x00)
        key, sa_key = struct.unpack(">QQ", data_out[:16])
        kind = scope_type & 0x0F
        mine = self.registrations.get(nexus)
        if action == 0x06:                                      # REGISTER AND IGNORE
            if sa_key == 0:
                if mine is not None:
                    self._unregister(nexus)
            else:
                self.registrations[nexus] = sa_key
            self.generation += 1
            return Reply()
        if action == 0x00:                                      # REGISTER
            if mine is None:
                if key != 0:
                    return CONFLICT
                if sa_key:
                    self.registrations[nexus] = sa_key
                    self.generation += 1
                return Reply()
            if key != mine:
                return CONFLICT
            if sa_key == 0:
                self._unregister(nexus)
            else:
                self.registrations[nexus] = sa_key
            self.generation += 1
            return Reply()
        if mine is None or key != mine:
            return CONFLICT
        if action == 0x01:                                      # RESERVE
            if self.pr_holder is None:
                self.pr_holder, self.pr_type = nexus, kind
                return Reply()
            if self.pr_holder == nexus and self.pr_type == kind:
                return Reply()
            return CONFLICT
        if action == 0x02:                                      # RELEASE
            if self.pr_holder != nexus:
                return Reply()
            if kind != self.pr_type:
                return check(ILLEGAL_REQUEST, 0x26, 0x04)
            self._release_pr(nexus)
            return Reply()
        if action == 0x03:                                      # CLEAR
            self._ua([n for n in self.registrations if n != nexus], 0x2A, 0x03)
            self.registrations.clear()
            self.pr_holder, self.pr_type = None, 0
            self.generation += 1
            return Reply()
        if action in (0x04, 0x05):                              # PREEMPT [AND ABORT]
            if action == 0x05 and self.hang_preempt_and_abort:
                return Reply(host_status=DID_TIME_OUT)
            if sa_key == 0:
                return check(ILLEGAL_REQUEST, 0x26, 0x00)
            victims = [n for n, k in self.registrations.items() if k == sa_key and n != nexus]
            takes_reservation = self.pr_holder is not None and self.holder_key() == sa_key
            if not victims and not takes_reservation:
                return CONFLICT
            for n in victims:
                del self.registrations[n]
            self._ua(victims, 0x2A, 0x05)
            if takes_reservation:
                self.pr_holder, self.pr_type = nexus, kind
            self.generation += 1
            return Reply()
        return check(ILLEGAL_REQUEST, 0x24, 0x00)

    def _rw_args(self, cdb: bytes):
        lba, count = struct.unpack(">QI", cdb[2:14])
        if lba + count > self.blocks:
            return None
        return lba, count

    def _read16(self, nexus, cdb, data_out) -> Reply:
        args = self._rw_args(cdb)
        if args is None:
            return check(ILLEGAL_REQUEST, 0x21, 0x00)
        lba, count = args
        return Reply(data=b"".join(self.storage.get(lba + i, bytes(self.block_size))
                                   for i in range(count)))

    def _write16(self, nexus, cdb, data_out) -> Reply:
        args = self._rw_args(cdb)
        if args is None or len(data_out) != args[1] * self.block_size:
            return check(ILLEGAL_REQUEST, 0x21, 0x00)
        if self.refuses_fua and cdb[1] & 0x08:
            return check(ILLEGAL_REQUEST, 0x24, 0x00)
        lba, count = args
        for i in range(count):
            self.storage[lba + i] = data_out[i * self.block_size:(i + 1) * self.block_size]
        return Reply()

    # -- the kernel side of SG_IO ---------------------------------------------

    def ioctl(self, nexus: int):
        def fake_ioctl(fd, request, arg, mutate=True):
            if request == 0x2284:                               # SG_SCSI_RESET
                self.reset(nexus, struct.unpack("@i", bytes(arg))[0])
                return 0
            if request != 0x2285:                               # SG_IO
                raise OSError(errno.ENOTTY, "not an sg ioctl")
            hdr = SgIoHdr.from_buffer(arg)
            if hdr.interface_id != ord("S"):
                raise OSError(errno.ENOSYS, "bad interface id")
            cdb = ctypes.string_at(hdr.cmdp, hdr.cmd_len)
            data_out = ctypes.string_at(hdr.dxferp, hdr.dxfer_len) if hdr.dxfer_direction == -2 else b""
            reply = self.execute(nexus, cdb, data_out, hdr.dxfer_len)
            hdr.status, hdr.host_status = reply.status, reply.host_status
            hdr.masked_status = reply.status >> 1
            written = 0
            if hdr.dxfer_direction == -3 and reply.data:
                written = min(len(reply.data), hdr.dxfer_len)
                ctypes.memmove(hdr.dxferp, reply.data, written)
            hdr.resid = hdr.dxfer_len - written if hdr.dxfer_direction == -3 else 0
            sense = reply.sense[:hdr.mx_sb_len]
            if sense:
                ctypes.memmove(hdr.sbp, sense, len(sense))
                hdr.driver_status = 0x08                          # DRIVER_SENSE
            hdr.sb_len_wr = len(sense)
            hdr.duration = 1
            return 0
        return fake_ioctl

    def device(self, nexus: int, **kwargs):
        """An SgDevice for ``nexus`` that runs inline (no threads, no sleeps)."""
        from clusdisk.scsi.sgio import SgDevice

        async def inline(func, *args):
            return func(*args)

        async def no_sleep(_delay):
            return None

        return SgDevice(f"/dev/fake-sg{nexus}", ioctl=self.ioctl(nexus),
                        open_fd=lambda path, flags: 1000 + nexus, close_fd=lambda fd: None,
                        run_blocking=inline, sleep=no_sleep, **kwargs)
