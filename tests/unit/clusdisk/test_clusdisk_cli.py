"""The clusdisk command line: scan over a fake sysfs with the fake LUN behind
SG_IO, diagram, status errors, config errors."""

import argparse
import io
import json

from clusdisk import cli
from clusdisk.reservations import Scsi2Reservation
from fake_lun import FakeLun
from test_clusdisk_disks import NAA_D, NAA_Q, add_lun


def scan_args(root, **kwargs):
    defaults = dict(sysfs_root=str(root), dev_root="/dev", hosts=None, json=False,
                    no_probe=False)
    defaults.update(kwargs)
    return argparse.Namespace(**defaults)


def lab(tmp_path):
    root = tmp_path / "sys"
    add_lun(root, "sg0", "0:0:1:0", "sda", NAA_Q, "lab-lun0-quorum", port=1)
    add_lun(root, "sg1", "0:0:1:1", "sdb", NAA_D, "lab-lun1-data", 2097152, port=1)
    quorum, data = FakeLun(), FakeLun(serial="lab-lun1-data", naa=NAA_D)
    return root, {"/dev/sg0": quorum, "/dev/sg1": data}


def test_scan_lists_identity_paths_size_and_reservation(tmp_path):
    root, luns = lab(tmp_path)
    import asyncio
    asyncio.run(Scsi2Reservation(luns["/dev/sg0"].device(1)).reserve())   # the other node holds it
    out = io.StringIO()
    code = cli.scan(scan_args(root), out=out,
                    device_factory=lambda path: luns[path].device(0))
    text = out.getvalue()
    assert code == 0
    assert "/dev/sg0   /dev/sda   0:0:1:0      64.0 MiB  LIO-ORG LAB-QUORUM  serial lab-lun0-quorum" in text
    assert f"id: naa.{NAA_Q.hex()}" in text and "id: t10.LIO-ORG lab-lun0-quorum" in text
    assert "reservation: reserved by another initiator (SPC-2)" in text
    assert "1.0 GiB" in text and "reservation: not reserved by another initiator" in text


def test_scan_json_and_filters(tmp_path):
    root, luns = lab(tmp_path)
    out = io.StringIO()
    cli.scan(scan_args(root, json=True, no_probe=True, hosts="0"), out=out)
    listed = json.loads(out.getvalue())
    assert [d["sg"] for d in listed] == ["/dev/sg0", "/dev/sg1"]
    assert listed[0]["designators"][0] == f"naa.{NAA_Q.hex()}"
    assert listed[0]["reservation"] == "not probed" and listed[1]["size_bytes"] == 1 << 30
    out = io.StringIO()
    cli.scan(scan_args(root, no_probe=True, hosts="7"), out=out)
    assert out.getvalue() == "no SCSI disks found\n"
    assert cli.scan(scan_args(root, hosts="x")) == 2


def test_diagram(capsys):
    assert cli.main(["diagram", "pr"]) == 0
    assert capsys.readouterr().out.startswith('digraph "clusdisk arbitration (pr)"')


def test_status_without_daemon(tmp_path, capsys):
    assert cli.main(["status", "--socket", str(tmp_path / "none.sock")]) == 1
    assert "clusdisk:" in capsys.readouterr().err


def test_bad_config_exits_2(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("cluster: {node_id: 1}\n")
    assert cli.main(["--config", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("clusdisk: cluster.nodes: exactly two nodes")
