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

* the cluster's verbs (``adopt``, ``release``, from clusdisk or the admin):
  each worker adopts or releases its own partition of the aggregate
  (``smbcad.cluster.partition``), so all must succeed: one refusal refuses
  the request, naming the worker and its reason (the others' partitions
  stay as they went); counts are summed and tickle lists joined;
* ``tickles``: every worker's list of the partner's connections, joined;
* ``status`` of a cluster node: one entry per aggregate with the node's view
  (phase "online" only when every worker's is; the mirror in sync only when
  every partition is) and each worker's own under ``partitions``.

A request every worker refused is refused with the first worker's error.
"""

from smbca.control import ControlError

_SUMMED = ("connections", "sessions", "opens", "disconnected_opens")
_LISTS = ("sessions", "opens", "locks", "closed", "released")
_SHARE_COUNTS = ("tree_connects", "opens")


_ALL_MUST = ("adopt", "release")


def command_of(message: dict) -> str:
    """A request's verb; clusdisk's aggregate events (``smbca.events``
    AggregateAdopt/AggregateRelease) are adopt and release."""
    if message.get("type") == "aggregate" and message.get("event") in _ALL_MUST:
        return str(message["event"])
    return str(message.get("command", ""))
_ADOPTION_COUNTS = ("restored", "intents", "kept", "dropped", "handed_over")


def merge(command: str, answers: list, supervisor_pid: int) -> dict:
    """``answers``: one per worker, in index order, each its answer dict or
    the ControlError it gave (or that reaching it gave)."""
    good = [(index, answer) for index, answer in enumerate(answers)
            if not isinstance(answer, ControlError)]
    if not good:
        raise ControlError(str(answers[0]) if answers else "no workers are running")
    if command in _ALL_MUST:
        return _merge_all_must(command, answers, good)
    merged = dict(good[0][1])
    if "tickles" in merged:
        merged["tickles"] = [item for _, answer in good for item in answer.get("tickles", ())]
    if command == "status" and isinstance(merged.get("status"), dict):
        merged["status"] = _merge_cluster_status(
            [(index, answer if isinstance(answer, ControlError) else answer.get("status") or {})
             for index, answer in enumerate(answers)])
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


def _merge_all_must(command: str, answers: list, good: list) -> dict:
    refused = [f"worker {index}: {answer}" for index, answer in enumerate(answers)
               if isinstance(answer, ControlError)]
    if refused:
        raise ControlError(f"{command} failed in {len(refused)} of {len(answers)} workers: "
                           + "; ".join(refused))
    merged = dict(good[0][1])
    for key in _ADOPTION_COUNTS:
        if key in merged:
            merged[key] = sum(answer.get(key, 0) for _, answer in good)
    if "seconds" in merged:
        merged["seconds"] = max(answer.get("seconds", 0) for _, answer in good)
    if "tickles" in merged:
        merged["tickles"] = [item for _, answer in good for item in answer.get("tickles", ())]
    merged["workers"] = [{"worker": index, **answer} for index, answer in good]
    return merged


def _common(values: list, mixed: str = "mixed"):
    return values[0] if all(value == values[0] for value in values) else mixed


def _merge_cluster_status(answers: list) -> dict:
    """``answers``: (worker, its cluster status or the ControlError it gave).
    A worker that did not answer counts as one whose partitions are not
    online and whose link is down."""
    statuses = [(index, status) for index, status in answers
                if not isinstance(status, ControlError)]
    missing = [(index, str(error)) for index, error in answers
               if isinstance(error, ControlError)]
    first = dict(statuses[0][1])
    links = [status.get("mirror_link") for _, status in statuses] + ["down"] * len(missing)
    first["mirror_link"] = _common(links, "down" if "down" in links else "mixed")
    counts: dict = {}
    for _, status in statuses:
        for key, value in (status.get("mirror_link_counts") or {}).items():
            if isinstance(value, int):
                counts[key] = counts.get(key, 0) + value
    first["mirror_link_counts"] = counts
    by_name: dict[str, list] = {}
    for index, status in statuses:
        for entry in status.get("aggregates", ()):
            by_name.setdefault(entry["name"], []).append((index, entry))
    first["aggregates"] = [_merge_aggregate(entries, missing) for entries in by_name.values()]
    first["workers"] = sorted(
        [{"worker": index, "mirror_link": status.get("mirror_link")}
         for index, status in statuses]
        + [{"worker": index, "mirror_link": "down", "error": error}
           for index, error in missing], key=lambda entry: entry["worker"])
    return first


_MIRROR_SUMS = ("mseq", "acked_mseq", "lag_frames", "lag_bytes", "degrade_count")
_MIRROR_MAXES = ("epoch", "generation", "last_ack_latency_s", "resync_duration_s")


def _merge_aggregate(entries: list, missing: list) -> dict:
    merged = dict(entries[0][1])
    merged["phase"] = _common([entry.get("phase") for _, entry in entries]
                              + ["unknown"] * len(missing), "partial")
    adopted = [entry.get("adopted") or {} for _, entry in entries]
    merged["adopted"] = {key: sum(one.get(key, 0) for one in adopted)
                         for key in adopted[0]} if adopted[0] else {}
    merged["detail"] = "; ".join(
        [f"worker {index}: {entry['detail']}" for index, entry in entries if entry.get("detail")]
        + [f"worker {index}: {error}" for index, error in missing])
    mirrors = [entry.get("mirror") for _, entry in entries]
    merged["mirror"] = _merge_mirror(mirrors) if all(mirrors) else None
    if merged["mirror"] is not None and missing:
        merged["mirror"]["in_sync"] = False
    merged["partitions"] = sorted(
        [{"worker": index, "phase": entry.get("phase"), "adopted": entry.get("adopted"),
          "detail": entry.get("detail"), "mirror": entry.get("mirror")}
         for index, entry in entries]
        + [{"worker": index, "phase": "unknown", "adopted": None, "detail": error,
            "mirror": None} for index, error in missing], key=lambda entry: entry["worker"])
    return merged


def _merge_mirror(mirrors: list) -> dict:
    """The node's view of one aggregate's mirror over every partition."""
    merged = dict(mirrors[0])
    for key in ("role", "link", "marker"):
        merged[key] = _common([mirror.get(key) for mirror in mirrors])
    merged["in_sync"] = all(mirror.get("in_sync") for mirror in mirrors)
    merged["fenced"] = any(mirror.get("fenced") for mirror in mirrors)
    for key in _MIRROR_SUMS:
        merged[key] = sum(mirror.get(key) or 0 for mirror in mirrors)
    for key in _MIRROR_MAXES:
        present = [mirror[key] for mirror in mirrors if mirror.get(key) is not None]
        merged[key] = max(present) if present else None
    resyncs: dict = {}
    for mirror in mirrors:
        for key, value in (mirror.get("resyncs") or {}).items():
            resyncs[key] = resyncs.get(key, 0) + value
    merged["resyncs"] = resyncs
    return merged
