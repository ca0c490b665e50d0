"""SCSI for clusdisk: pure CDB builders (``cdb``), data-in parsers
(``pages``), sense decoding (``sense``) and errors; ``clusdisk.scsi.sgio`` is
the only module that talks to the kernel and is imported explicitly."""

from clusdisk.scsi import cdb, pages, sense
from clusdisk.scsi.cdb import Command, Direction, PrInAction, PrOutAction, PrType
from clusdisk.scsi.errors import ScsiCommandError, ScsiError, ScsiParseError, ScsiTransportError
from clusdisk.scsi.pages import (
    Association,
    Capacity,
    CodeSet,
    Designator,
    DesignatorType,
    RegisteredKeys,
    Reservation,
    StandardInquiry,
)
from clusdisk.scsi.sense import Outcome, OutcomeKind, SenseData, SenseKey, classify, decode_sense

__all__ = [
    "Association", "Capacity", "CodeSet", "Command", "Designator", "DesignatorType",
    "Direction", "Outcome", "OutcomeKind", "PrInAction", "PrOutAction", "PrType",
    "RegisteredKeys", "Reservation", "ScsiCommandError", "ScsiError", "ScsiParseError",
    "ScsiTransportError", "SenseData", "SenseKey", "StandardInquiry", "cdb", "classify",
    "decode_sense", "pages", "sense",
]
