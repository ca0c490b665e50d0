"""DCE/RPC services on IPC$ named pipes (ncacn_np).

Public surface: open a pipe by name for an SMB2 CREATE on IPC$ and drive it
with the SMB WRITE / READ / IOCTL / CLOSE verbs.  The DCE/RPC core is
``smbca.rpc.dcerpc``; the interfaces (srvsvc, lsarpc, samr) encode their
stubs with impacket's NDR types.  ``local_directory`` builds the name and
SID lookups the lsarpc and samr pipes answer.
"""

from smbcad.rpc.accounts import PosixAccounts
from smbcad.rpc.directory import Directory, local_directory
from smbcad.rpc.names import NameResolver, ResolverChain, account_domain

from smbcad.rpc.pipe import (
    FSCTL_PIPE_PEEK,
    FSCTL_PIPE_TRANSCEIVE,
    PIPE_NAMES,
    FilePipeLocalInformation,
    NamedPipe,
    PipeEnvironment,
    PipeFactory,
    PipePeek,
    PipeRead,
    PipeTransceive,
    open_pipe,
    pipe_key,
)
from smbcad.rpc.srvsvc import (
    SRVSVC_SYNTAX,
    STYPE_DISKTREE,
    STYPE_IPC,
    STYPE_SPECIAL,
    ServerConfig,
    ShareInfo,
    ShareProvider,
    SrvsvcServer,
    srvsvc_interface,
)

__all__ = [
    "Directory", "NameResolver", "PosixAccounts", "ResolverChain", "account_domain",
    "local_directory",
    "FSCTL_PIPE_PEEK", "FSCTL_PIPE_TRANSCEIVE", "PIPE_NAMES", "SRVSVC_SYNTAX",
    "STYPE_DISKTREE", "STYPE_IPC", "STYPE_SPECIAL", "FilePipeLocalInformation",
    "NamedPipe", "PipeEnvironment", "PipeFactory", "PipePeek", "PipeRead",
    "PipeTransceive", "ServerConfig", "ShareInfo", "ShareProvider", "SrvsvcServer",
    "open_pipe", "pipe_key", "srvsvc_interface",
]
