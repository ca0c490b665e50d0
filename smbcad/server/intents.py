"""Create intents: a persistent CREATE that creates or overwrites gets the
same answer when its client replays it after a crash or a takeover.

The gap (shared/reference/cluster.md section 8, questions 1 and 2): a
CREATE makes the file, then its open's record is committed, then it
answers.  If the node dies between the first and the second step, the
client replays the CREATE (same CreateGuid, SMB2_FLAGS_REPLAY_OPERATION,
[MS-SMB2] 3.3.5.9) on the node that took over, which has no open for it:
run again, FILE_CREATE fails with OBJECT_NAME_COLLISION on the file the
client itself made, OPEN_IF answers OPENED instead of CREATED, an overwrite
truncates a second time.

The fix, as Samba reserves its replay-cache record before the open runs
(cluster.md 1.1) and Windows' Resume Key Filter records operations in
flight: before such a CREATE touches the file, an *intent* record is
committed through the share's handle store (hence mirrored to the partner
with everything else), under the DurableFileId the open will get.  It says
what the CREATE is about to do and what the name held before
(``CreateIntent``, smbcad.store.records section 2).  The open's record then
replaces it in place (an ``update`` of the same key: no extra commit).
An intent is only needed where re-running differs from the first run:
FILE_CREATE, OPEN_IF/OVERWRITE_IF/SUPERSEDE of a missing name, and
OVERWRITE/OVERWRITE_IF/SUPERSEDE of an existing file.  Plain opens pay
nothing.

After a restart or takeover, ``OpenTable.adopt`` restores intents
(``RestoredIntent``), each reserving its name (other CREATEs of it get
STATUS_FILE_NOT_AVAILABLE, as a disconnected persistent open's file does)
until its client replays the CREATE or its durable timeout passes.  A
replay that passes the checks of 3.3.5.9.10 (same ClientGuid, same user,
same CreateGuid, same request) is then decided by ``outcome``: the name
still as the intent found it, the CREATE never ran and runs now; the file
there that the intent says the CREATE made or overwrote, the CREATE is
answered as it would have been (CREATED, OVERWRITTEN, SUPERSEDED) with an
open of that file, its attributes applied again, nothing created or
truncated twice.  An intent that no longer describes the name (the file
was replaced) is rewritten to the name's current state before the CREATE
runs, so a committed intent is always true of the file it names.
"""

import asyncio
import enum
import logging
from dataclasses import dataclass, replace
from typing import Any, Callable

from smbcad.proto.constants import CreateAction, CreateDisposition as Disp, CreateOptions
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.server import durable
from smbcad.server.context import COMMIT_INTERIM_S, Pending
from smbcad.store import ZERO_GUID, CreateIntent, PersistentOpen, StoreError

log = logging.getLogger("smbcad.intents")

_OVERWRITING = (Disp.SUPERSEDE, Disp.OVERWRITE, Disp.OVERWRITE_IF)


class Outcome(enum.Enum):
    """What a replay of a restored intent's CREATE finds (``outcome``)."""

    RUN = "run"                  # the name is as the intent found it: the CREATE never ran
    CREATED = "created"          # the file the CREATE made is there
    OVERWRITTEN = "overwritten"  # the file it overwrote is there, already truncated
    STALE = "stale"              # another file has the name now: the intent describes nothing


@dataclass(eq=False)
class InFlight:
    """The intent of the CREATE this request runs (``RequestContext.create_intent``).

    ``record`` is as stored (its ``record_version`` is the store's);
    ``restored`` is the OpenTable entry it came from after a restart or
    takeover, and ``may_have_run`` says the CREATE may have run already
    (true until the intent is rewritten on this node)."""

    record: PersistentOpen
    restored: Any = None
    may_have_run: bool = False


# --- the decision (pure) -----------------------------------------------------------

def describe(request, resolved) -> tuple[CreateIntent, int, int] | None:
    """The intent a CREATE needs against the name as ``resolved`` finds it:
    (intent, volume id, inode of the file to be overwritten, 0 for a create),
    or None when running it twice gives the same answer (an open of an
    existing file, a CREATE that will fail)."""
    disposition = request.create_disposition
    if resolved.exists:
        if disposition not in _OVERWRITING:
            return None
        info = resolved.info
        return (CreateIntent(disposition, info.change_time, info.end_of_file),
                info.device_id, info.file_id)
    if disposition in (Disp.OPEN, Disp.OVERWRITE):
        return None
    return CreateIntent(disposition), 0, 0


def outcome(record: PersistentOpen, resolved, same_volume: Callable[[int, int], bool]) -> Outcome:
    """What became of a restored intent's CREATE, judged from the name now.

    A create intent (``file_ino`` 0: the name was free) finds the file it
    made, or the name still free.  An overwrite intent finds its file
    (same volume id and inode) truncated already (its size or change time
    moved from the recorded ones) or not yet.  A file of the other kind
    (a directory for a file) or another inode is STALE."""
    want_directory = bool(record.create_options & CreateOptions.DIRECTORY_FILE)
    if not resolved.exists:
        return Outcome.RUN if record.file_ino == 0 else Outcome.STALE
    info = resolved.info
    if record.file_ino == 0:
        return Outcome.CREATED if info.is_directory == want_directory else Outcome.STALE
    if info.file_id != record.file_ino or not same_volume(record.file_dev, info.device_id):
        return Outcome.STALE
    intent = record.create_intent
    if (info.end_of_file, info.change_time) == (intent.prior_size, intent.prior_change_time):
        return Outcome.RUN
    return Outcome.OVERWRITTEN


def answer_of(found: Outcome, disposition: int) -> int | None:
    """The CreateAction the original CREATE answered, when it ran."""
    if found is Outcome.CREATED:
        return CreateAction.CREATED
    if found is Outcome.OVERWRITTEN:
        return (CreateAction.SUPERSEDED if disposition == Disp.SUPERSEDE
                else CreateAction.OVERWRITTEN)
    return None


def _same_request(record: PersistentOpen, request) -> bool:
    """The replay asks for what the intent's CREATE asked (3.3.5.9.10: a
    replay is the same request; WRITE_THROUGH is added on CA shares)."""
    return (record.create_intent.disposition == request.create_disposition
            and record.desired_access == request.desired_access
            and record.share_access == request.share_access
            and not ((record.create_options ^ request.create_options)
                     & ~CreateOptions.WRITE_THROUGH)
            and record.path.lower() == _path_of(request.name))


def _path_of(name: str) -> str:
    return "/".join(part for part in name.replace("\\", "/").split("/") if part).lower()


# --- the CREATE's steps ------------------------------------------------------------

def _wanted(ctx, request):
    """The DH2Q context of a CREATE that will get a persistent handle, else None."""
    v2 = request.create_contexts.durable_handle_request_v2
    if v2 is None or not durable.will_be_persistent(ctx, v2):
        return None
    return v2


def find_replayed(ctx, request) -> None:
    """A replayed CREATE whose CreateGuid has a restored intent takes it up
    (``ctx.create_intent``), after the checks 3.3.5.9.10 makes of a replay
    against an open: the same client and user, the same request."""
    if ctx.create_intent is not None or not ctx.header.is_replay:
        return
    v2 = _wanted(ctx, request)
    opens = ctx.server.opens
    if v2 is None or not opens.intents:
        return
    restored = opens.intent(v2.create_guid)
    if restored is None or restored.record.client_guid != ctx.connection.client_guid:
        return
    record = restored.record
    if not durable.is_owner((record.owner_user, record.owner_domain), record.owner_sid,
                            ctx.session):
        raise SmbError(NtStatus.ACCESS_DENIED, "replay by another user")
    if restored.share is not ctx.tree.share:
        raise SmbError(NtStatus.FILE_NOT_AVAILABLE, "the CREATE was on another share")
    if not _same_request(record, request):
        raise SmbError(NtStatus.CONTEXT_MISMATCH, "replay differs from the original CREATE")
    ctx.create_intent = InFlight(record, restored, may_have_run=True)


def check_not_reserved(ctx, resolved) -> None:
    """A name a restored intent holds is its CREATE's until that CREATE is
    replayed or times out: anybody else gets STATUS_FILE_NOT_AVAILABLE, as
    for a file held by a disconnected persistent open (3.3.5.9)."""
    opens = ctx.server.opens
    if not opens.intents:
        return
    holder = opens.intent_on(ctx.tree.share, resolved.path)
    if holder is None:
        return
    own = ctx.create_intent
    if own is None or own.restored is not holder:
        raise SmbError(NtStatus.FILE_NOT_AVAILABLE,
                       f"{resolved.path!r} waits for the replay of a CREATE in flight")


def original_action(ctx, resolved) -> int | None:
    """For a replay of a CREATE that ran before (``find_replayed``): the
    CreateAction it answered, to answer again with an open of that file;
    None when the CREATE must run (now)."""
    own = ctx.create_intent
    if own is None or not own.may_have_run:
        return None
    record = own.record
    found = outcome(record, resolved, ctx.tree.share.fs.volume.same_volume)
    action = answer_of(found, record.create_intent.disposition)
    if action is not None:
        log.info("%s: replayed CREATE of %r answered from its intent %#x (%s)",
                 ctx.connection.peer, record.path, record.durable_file_id, found.value)
    return action


def before_open(ctx, request, resolved, retry: Callable) -> Pending | None:
    """Right before the CREATE touches the name: None to go on, or a
    Pending that first commits the intent the CREATE needs (or rewrites or
    removes the one in place, when the name changed since), then runs the
    whole CREATE again (``retry``) with the intent in place."""
    own = ctx.create_intent
    if _wanted(ctx, request) is None:
        return None
    described = describe(request, resolved)
    if own is not None and own.may_have_run:
        if original_action(ctx, resolved) is not None:
            return None                     # answered from what the CREATE did
        if outcome(own.record, resolved, ctx.tree.share.fs.volume.same_volume) is Outcome.RUN:
            return None                     # the intent still describes the name
    elif own is None and described is None:
        return None
    elif own is not None and described is not None and _describes(own.record, described):
        return None
    return Pending(_commit_then_retry(ctx, request, resolved, described, retry),
                   COMMIT_INTERIM_S)


def _describes(record: PersistentOpen, described) -> bool:
    intent, device_id, inode = described
    return (record.create_intent == intent and record.file_ino == inode
            and record.file_dev == device_id)


async def _commit_then_retry(ctx, request, resolved, described, retry: Callable):
    store = ctx.tree.share.store
    own = ctx.create_intent
    if described is None:
        # The name changed under it (now a plain open, or a failure): no intent.
        ctx.create_intent = None
        if own.restored is not None:
            ctx.server.opens.take_intent(own.restored)
        await store.close(own.record.durable_file_id)
    else:
        durable_file_id = (own.record.durable_file_id if own is not None
                           else ctx.server.opens.next_file_ids()[0])
        record = _record(ctx, request, resolved, described, durable_file_id)
        try:
            if own is None:
                stored = await store.create(record)
            else:
                stored = await store.update(
                    replace(record, record_version=own.record.record_version))
        except StoreError as exc:
            ctx.create_intent = None
            log.error("create intent for %r not stored: %s", resolved.path, exc)
            raise SmbError(NtStatus.INSUFFICIENT_RESOURCES, "handle store failed") from exc
        except asyncio.CancelledError:
            # A CANCEL (or a lost connection) during the commit: the commit
            # goes on, the CREATE does not.  A fresh intent goes after it, as
            # abandon() removes one; left, it would be restored after a
            # restart and hold the name for a replay that never comes.
            if own is None:
                ctx.server.spawn(store.close(durable_file_id))
            raise
        restored = own.restored if own is not None else None
        if restored is not None:
            restored.record = stored
        ctx.create_intent = InFlight(stored, restored)
    try:
        reply = retry(ctx)
        if isinstance(reply, Pending):
            reply = await reply.work
    except BaseException:
        abandon(ctx)
        raise
    return reply


def _record(ctx, request, resolved, described, durable_file_id: int) -> PersistentOpen:
    intent, device_id, inode = described
    v2 = request.create_contexts.durable_handle_request_v2
    user, domain = durable.owner_of(ctx.session)
    return PersistentOpen(
        durable_file_id=durable_file_id, create_guid=v2.create_guid,
        client_guid=ctx.connection.client_guid or ZERO_GUID, owner_user=user,
        owner_domain=domain, owner_sid=durable.owner_sid_of(ctx.session),
        share_name=ctx.tree.share.name, path=resolved.path,
        file_dev=device_id, file_ino=inode, desired_access=request.desired_access,
        share_access=request.share_access, create_options=request.create_options,
        file_attributes=request.file_attributes,
        is_directory=bool(request.create_options & CreateOptions.DIRECTORY_FILE),
        durable_timeout_ms=durable.v2_timeout_ms(ctx.tree.share, v2),
        # when it was made: a store-level expire() ages it out like a
        # disconnected open; is_persistent stays False (it is no open yet)
        disconnected_at_ms=int(ctx.server.clock() * 1000), create_intent=intent)


def abandon(ctx) -> None:
    """The CREATE failed after its intent was committed: the client got (or
    gets) the error and will not replay, so a fresh intent goes; a restored
    one stays for a later replay until it times out."""
    own = ctx.create_intent
    ctx.create_intent = None
    if own is None or own.restored is not None:
        return
    ctx.server.spawn(ctx.tree.share.store.close(own.record.durable_file_id))


def take(ctx) -> tuple[int, int] | None:
    """The open is being made: (its DurableFileId, the intent's stored
    version) so the open's first commit replaces the intent; None without one."""
    own = ctx.create_intent
    if own is None:
        return None
    ctx.create_intent = None
    if own.restored is not None:
        ctx.server.opens.take_intent(own.restored)
    return own.record.durable_file_id, own.record.record_version
