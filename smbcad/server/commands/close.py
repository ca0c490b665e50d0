"""CLOSE ([MS-SMB2] 3.3.5.10)."""

from smbcad.proto.close import CloseRequest, CloseResponse
from smbcad.proto.errors import SmbError
from smbcad.server import files


def handle(ctx):
    request = CloseRequest.decode(ctx.message)
    open_ = ctx.lookup_open(request.file_id)
    response = CloseResponse()
    if request.postquery_attrib and not open_.is_pipe:
        try:
            response = CloseResponse.with_attributes(ctx.tree.share.fs.stat(open_.handle))
        except SmbError:
            response = CloseResponse()      # the file went away under us: zeros (3.3.5.10)
    files.close_open(ctx.server, open_)
    return response.encode()
