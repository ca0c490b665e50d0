"""``smbca``: the admin command for a node (ARCHITECTURE.md "Local control").

It talks to each daemon's own control interface and adds nothing of its own:

  smbca status                 clusdisk membership and ownership (clusdisk status)
  smbca witness notify ARGS    post an event to witnessd (python -m witnessd.notify)
  smbca witness status         witnessd interfaces and registrations
  smbca scan                   SCSI disks with identifiers and reservations

takeover, giveback, relocate, lif migrate, sessions and opens arrive with the
cluster and CA-handle work (issues 4 and later).
"""

import sys

USAGE = __doc__.split("\n\n")[2]


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: smbca COMMAND ...\n\n" + USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "status":
        from clusdisk.cli import main as clusdisk_main
        return clusdisk_main(["status", *rest])
    if command == "scan":
        from clusdisk.cli import main as clusdisk_main
        return clusdisk_main(["scan", *rest])
    if command == "witness" and rest[:1] == ["notify"]:
        from witnessd.notify import main as notify_main
        return notify_main(rest[1:])
    if command == "witness" and rest[:1] == ["status"]:
        from witnessd.notify import main as notify_main
        return notify_main(["status", *rest[1:]])
    print(f"smbca: unknown command {' '.join(args[:2])!r}\n\n" + USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
