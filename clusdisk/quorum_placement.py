"""The placement record on the quorum LUN (``clusdisk.placement_record``),
read and written with READ(16)/WRITE(16) through the quorum's SG device.
Only the quorum owner calls it (the reservation lets it through).

``QuorumPlacement.read()`` returns the newest valid record's payload or
None (no record yet); both verbs raise ScsiError when the LUN refuses or is
too small, and the caller falls back to its own copy.
"""

from clusdisk import placement_record as record
from clusdisk.scsi import cdb
from clusdisk.scsi.errors import ScsiError
from clusdisk.scsi.pages import parse_read_capacity_16
from clusdisk.scsi.sense import SenseKey


class QuorumPlacement:
    def __init__(self, device) -> None:
        self.device = device
        self._block_size: int | None = None
        self._fua = True

    async def _geometry(self) -> int:
        """The block size, checked once: the record must fit the LUN."""
        if self._block_size is None:
            result = await self.device.execute(cdb.read_capacity_16())
            if not result.outcome.ok:
                raise ScsiError(f"READ CAPACITY(16): {result.outcome.describe()}")
            capacity = parse_read_capacity_16(result.data)
            size = capacity.block_length
            if record.RECORD_OFFSET_BYTES % size or record.SLOT_BYTES % size:
                raise ScsiError(f"quorum LUN block size {size} does not divide the "
                                "placement record's slots")
            end = record.RECORD_OFFSET_BYTES + record.SLOTS * record.SLOT_BYTES
            if capacity.size_bytes < end:
                raise ScsiError(f"quorum LUN of {capacity.size_bytes} bytes has no room for "
                                f"the placement record ({end} bytes needed)")
            self._block_size = size
        return self._block_size

    async def read(self) -> dict | None:
        size = await self._geometry()
        blocks = record.SLOTS * record.SLOT_BYTES // size
        result = await self.device.execute(
            cdb.read_16(record.RECORD_OFFSET_BYTES // size, blocks, size))
        if not result.outcome.ok:
            raise ScsiError(f"reading the placement record: {result.outcome.describe()}")
        data = result.data
        return record.newest(data[i:i + record.SLOT_BYTES]
                             for i in range(0, len(data), record.SLOT_BYTES))

    async def write(self, placement_json: dict, writer: int) -> None:
        size = await self._geometry()
        slot = record.slot_of(placement_json["generation"])
        lba = (record.RECORD_OFFSET_BYTES + slot * record.SLOT_BYTES) // size
        data = record.encode(placement_json, writer)
        result = await self.device.execute(cdb.write_16(lba, data, size, fua=self._fua))
        if self._fua and _refuses_fua(result.outcome):
            # LIO refuses FUA on a LUN whose write cache is off (its writes
            # reach the medium before they complete anyway): write plainly.
            self._fua = False
            result = await self.device.execute(cdb.write_16(lba, data, size, fua=False))
        if not result.outcome.ok:
            raise ScsiError(f"writing the placement record: {result.outcome.describe()}")


def _refuses_fua(outcome) -> bool:
    """ILLEGAL REQUEST, 24/00 invalid field in CDB: the answer to a FUA bit
    the device does not take."""
    return (outcome.sense_key == SenseKey.ILLEGAL_REQUEST
            and (outcome.asc, outcome.ascq) == (0x24, 0x00))
