"""The opens a rename concerns ([MS-FSA] 2.1.5.15.12; [MS-SMB2] 3.3.5.21.1),
in this process and, with worker processes (docs/multicore.md), in the
node's other workers.

Before: a directory is not renamed while anything below it is open
(STATUS_ACCESS_DENIED, as Windows and smbd refuse it).  ``opens_below``
answers for this process; with workers the others are asked first
(``check_elsewhere``: an OpensBelow to each, the SET_INFO pending meanwhile).

After: every open of the renamed file, and of anything below a renamed
directory, lives at the new name.  Their delete-on-close must hit the right
path, a persistent open's record must name the file as it is now (else a
restart or takeover finds it "gone"), a DH2C and a name query give the new
name (Open.FileName, 3.3.5.9.12), and a directory lease's published place
moves with it.  ``follow`` does that here; with workers the SET_INFO
answers once every other worker has done it too and stored its persistent
opens' new names (``answer_when_followed``: a Renamed to each, whose
receiver runs ``on_renamed``).
"""

import asyncio

from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.server import dirleases, durable
from smbcad.server.context import COMMIT_INTERIM_S, Pending
from smbcad.server.leases_elsewhere import run_again


def opens_below(server, share, path: str) -> bool:
    """Whether this process has an open of anything below directory ``path``."""
    prefix = path + "/" if path else ""
    for state in server.opens.by_file.values():
        for other in state.opens:
            if other.tree.share is share and other.handle.path.startswith(prefix):
                return True
    return False


def follow(server, share, file_key: tuple, old: str, new: str) -> list:
    """This process's opens of ``file_key`` (at ``old``) and of anything
    below ``old`` now live under ``new``; the opens that moved."""
    prefix = old + "/"
    moved = []
    for state in server.opens.by_file.values():
        for other in state.opens:
            if other.is_pipe or other.tree.share is not share:
                continue
            path = other.handle.path
            if other.file_key == file_key:
                now = new
            elif path.startswith(prefix):
                now = new + "/" + path[len(prefix):]
            else:
                continue
            other.handle.path = other.path = now
            other.client_name = now.replace("/", "\\")
            moved.append(other)
    dirleases.moved(server.leasing, moved)
    return moved


def check_elsewhere(ctx, open_, retry) -> Pending:
    """Ask the other workers whether they have opens below the directory
    ``open_`` renames; refuse the rename if one has, else run the SET_INFO
    again without asking (``ctx.asked_workers``)."""
    share, path = ctx.tree.share, open_.handle.path

    async def asked():
        if await ctx.server.peers.anything_open_below(share.name, path):
            raise SmbError(NtStatus.ACCESS_DENIED, "files below the directory are open "
                                                   "through another worker")
        ctx.asked_workers = True
        return await run_again(ctx, retry)
    return Pending(asked(), COMMIT_INTERIM_S)


def answer_when_followed(ctx, open_, old: str, commit, body: bytes) -> Pending:
    """The SET_INFO's response once this process's records of the renamed
    opens are stored (``commit``, may be None) and every other worker has
    followed the rename."""
    share, new = ctx.tree.share, open_.handle.path

    async def answer():
        if commit is not None:
            await commit
        await ctx.server.peers.renamed(open_.file_key, share.name, old, new)
        return body
    return Pending(answer(), COMMIT_INTERIM_S)


def on_opens_below(server, share_name: str, directory: str) -> bool:
    """Another worker renames ``directory``: whether anything below it is open here."""
    share = server.find_share(share_name)
    return share is not None and opens_below(server, share, directory)


async def on_renamed(server, file_key: tuple, share_name: str, old: str, new: str) -> None:
    """Another worker renamed a file: follow it, and store the persistent
    opens' new names before it answers."""
    share = server.find_share(share_name)
    if share is None:
        return
    by_file: dict[tuple, list] = {}
    for open_ in follow(server, share, file_key, old, new):
        by_file.setdefault(open_.file_key, []).append(open_)
    commits = [commit for opens in by_file.values()
               if (commit := durable.persist_many(server.opens, opens)) is not None]
    if commits:
        await asyncio.gather(*commits)
