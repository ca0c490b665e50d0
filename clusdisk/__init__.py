"""clusdisk: smbca's shared-disk cluster service (quorum arbitration on a
shared LUN, authenticated heartbeat, data LUN reservations and the ordered
bring-up/tear-down of aggregates).

The public surface is re-exported here; the submodules are private.  The
pure cores (``scsi.cdb``, ``scsi.pages``, ``scsi.sense``, ``arbitration``,
``heartbeat``, ``resources``) import the standard library only; I/O lives in
``scsi.sgio`` (the only ioctls), ``heartbeat_transport`` and ``lif`` (the
only sockets besides the shared control socket of ``smbca.control``; ``lif``
is the only pyroute2 user), the executors
(``executor``, ``aggregates``) and ``daemon``.  ``daemon``, ``lif`` and
``metrics`` are imported on demand, not from here.
"""

from clusdisk.aggregates import AggregateManager, HostOps
from clusdisk.arbitration import (
    Arbiter,
    ArbitrationError,
    Input,
    Mode,
    State,
    Timer,
    Timings,
    to_dot,
)
from clusdisk.config import Config, load_yaml
from clusdisk.disks import DiskError, LunPath, Mounter, resolve, scan
from clusdisk.errors import ClusdiskError
from clusdisk.executor import ArbitrationExecutor, LoopClock
from clusdisk.heartbeat import Datagram, HeartbeatConfig, HeartbeatError, HeartbeatProtocol
from clusdisk.reservations import PrReservation, Scsi2Reservation, Verdict
from clusdisk.resources import Aggregate, Lif, View, plan

__all__ = [
    "Aggregate", "AggregateManager", "Arbiter", "ArbitrationError", "ArbitrationExecutor",
    "ClusdiskError", "Config", "Datagram", "DiskError", "HeartbeatConfig",
    "HeartbeatError", "HeartbeatProtocol", "HostOps", "Input", "Lif", "LoopClock", "LunPath",
    "Mode", "Mounter", "PrReservation", "Scsi2Reservation", "State", "Timer", "Timings",
    "Verdict", "View", "load_yaml", "plan", "resolve", "scan", "to_dot",
]
