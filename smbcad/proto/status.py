"""NTSTATUS values ([MS-ERREF] 2.3): the codec's view of ``smbca.ntstatus``.

The catalogue lives in the shared package because auth and the handle store
need it without the SMB codec; every SMB module keeps importing it from here.
"""

from smbca.ntstatus import NtStatus, is_error, name_of

__all__ = ["NtStatus", "is_error", "name_of"]
