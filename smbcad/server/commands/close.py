"""CLOSE ([MS-SMB2] 3.3.5.10)."""

from smbcad.proto.close import CloseRequest, CloseResponse
from smbcad.proto.errors import SmbError
from smbcad.server.context import answer_after


def handle(ctx):
    request = CloseRequest.decode(ctx.message)
    open_ = ctx.lookup_open(request.file_id)
    response = CloseResponse()
    if request.postquery_attrib and not open_.is_pipe:
        try:
            response = CloseResponse.with_attributes(ctx.tree.share.fs.stat(open_.handle))
        except SmbError:
            response = CloseResponse()      # the file went away under us: zeros (3.3.5.10)
    commit = ctx.server.opens.close(open_)
    body = response.encode()
    if commit is None:
        return body
    # a persistent open is gone from the store before CLOSE answers
    return answer_after(commit, body)
