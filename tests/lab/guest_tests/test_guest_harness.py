"""The in-guest fixtures themselves: LUN map, LUN reset between tests, two
network namespaces.  Runs in the lab guest (tests/lab/test_lab.py starts it).
"""

import subprocess
from pathlib import Path

import guestlab


def _scsi(sg: str, *cdb: str) -> int:
    return subprocess.run(["sg_raw", sg, *cdb], capture_output=True, timeout=30).returncode


RESERVATION_CONFLICT = 24          # sg3_utils exit status


def test_map_names_each_lun_through_both_initiators(luns):
    lab_map = luns                 # the map, after reset_luns
    assert [lun.name for lun in lab_map.luns] == ["quorum", "data"]
    assert lab_map.host_a != lab_map.host_b
    for lun in lab_map.luns:
        assert lun.a.sg != lun.b.sg and lun.a.sd != lun.b.sd
        assert lun.a.hctl.split(":")[0] == str(lab_map.host_a)
        assert lun.b.hctl.split(":")[0] == str(lab_map.host_b)
        for path in (lun.a, lun.b):
            sysfs = Path("/sys/bus/scsi/devices") / path.hctl
            assert (sysfs / "wwid").read_text().strip() == lun.wwid
            assert (sysfs / "scsi_generic" / Path(path.sg).name).is_dir()
    assert len({lun.wwid for lun in lab_map.luns}) == len(lab_map.luns)


def test_reset_luns_drops_reservations(lab_map):
    quorum, data = lab_map.quorum, lab_map.data
    assert _scsi(quorum.a.sg, "16", "00", "00", "00", "00", "00") == 0       # RESERVE(6) via A
    subprocess.run(["sg_persist", "-n", "-o", "--register", "--param-sark=0xb", data.b.sg],
                   check=True, capture_output=True, timeout=30)
    subprocess.run(["sg_persist", "-n", "-o", "--reserve", "--param-rk=0xb", "--prout-type=5",
                    data.b.sg], check=True, capture_output=True, timeout=30)
    assert _scsi(quorum.b.sg, "00", "00", "00", "00", "00", "00") == RESERVATION_CONFLICT
    guestlab.reset_luns(lab_map)
    for lun in lab_map.luns:
        for path in (lun.a, lun.b):
            assert _scsi(path.sg, "00", "00", "00", "00", "00", "00") == 0
    keys = subprocess.run(["sg_persist", "-n", "-i", "-k", data.a.sg], capture_output=True,
                          text=True, timeout=30).stdout
    assert "NO registered reservation keys" in keys


def test_nodes_talk_over_both_links_and_links_can_be_cut(nodes):
    def exchange(link: int) -> bytes | None:
        server, client = nodes.socket("B"), nodes.socket("A")
        with server, client:
            server.bind((nodes.address("B", link), 0))
            server.settimeout(1.0)
            try:
                client.sendto(b"ping", server.getsockname())
                data, peer = server.recvfrom(64)
            except OSError:            # ENETUNREACH with the link down, or the timeout
                return None
            assert peer[0] == nodes.address("A", link)
            return data

    assert exchange(0) == b"ping" and exchange(1) == b"ping"
    nodes.cut([0])
    assert exchange(0) is None and exchange(1) == b"ping"
    nodes.heal()
    assert exchange(0) == b"ping"


def test_processes_run_in_a_node(nodes):
    proc = nodes.popen("A", ["ip", "-brief", "address", "show", "hb0a"],
                       stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=30)
    assert "198.51.100.1/24" in out
