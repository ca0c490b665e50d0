"""The supervisor's answer to the ``smbca`` command when workers serve the
node: each request goes to every worker's control socket and the answers
are merged here (sans-IO).  An admin sees one server, as with one process.

* ``status``: the workers' counts summed, each worker listed (index, pid,
  or the error it gave);
* ``sessions``, ``opens``, ``locks``: one list, each entry with its worker;
* ``shares``: per share, its tree connects and opens summed;
* the actions (``close-open``, ``close-session``, ``release-disconnected``):
  the worker that has the open or session acts, the others answer "no
  ...": their errors are dropped when one succeeded.

A request every worker refused is refused with the first worker's error.
"""

from smbca.control import ControlError

_SUMMED = ("connections", "sessions", "opens", "disconnected_opens")
_LISTS = ("sessions", "opens", "locks", "closed", "released")
_SHARE_COUNTS = ("tree_connects", "opens")


def merge(command: str, answers: list, supervisor_pid: int) -> dict:
    """``answers``: one per worker, in index order, each its answer dict or
    the ControlError it gave (or that reaching it gave)."""
    good = [(index, answer) for index, answer in enumerate(answers)
            if not isinstance(answer, ControlError)]
    if not good:
        raise ControlError(str(answers[0]) if answers else "no workers are running")
    merged = dict(good[0][1])
    for key in _LISTS:
        if any(key in answer for _, answer in good):
            merged[key] = [{**item, "worker": index} if isinstance(item, dict) else item
                           for index, answer in good for item in answer.get(key, ())]
    if any("shares" in answer for _, answer in good):
        merged["shares"] = _merge_shares(good)
    if command == "status":
        merged = _merge_status(merged, good, answers, supervisor_pid)
    return merged


def _merge_shares(good: list) -> list:
    by_name: dict[str, dict] = {}
    for _, answer in good:
        for share in answer.get("shares", ()):
            seen = by_name.get(share["name"])
            if seen is None:
                by_name[share["name"]] = dict(share)
                continue
            for key in _SHARE_COUNTS:
                seen[key] = seen.get(key, 0) + share.get(key, 0)
    return list(by_name.values())


def _merge_status(merged: dict, good: list, answers: list, supervisor_pid: int) -> dict:
    smb = dict(merged.get("smb", {}))
    for key in _SUMMED:
        smb[key] = sum(answer.get("smb", {}).get(key, 0) for _, answer in good)
    smb["pid"] = supervisor_pid
    smb["workers"] = [
        {"index": index, "error": str(answer)} if isinstance(answer, ControlError)
        else {"index": index, "pid": answer.get("smb", {}).get("pid"),
              "connections": answer.get("smb", {}).get("connections", 0),
              "sessions": answer.get("smb", {}).get("sessions", 0),
              "opens": answer.get("smb", {}).get("opens", 0)}
        for index, answer in enumerate(answers)]
    merged["smb"] = smb
    return merged
