"""File system control codes: the information classes of QUERY_INFO, SET_INFO and
QUERY_DIRECTORY ([MS-FSCC] 2.4, 2.5), security descriptors ([MS-DTYP] 2.4) and
directory search patterns ([MS-FSA] 2.1.4.4).

Sans-IO: metadata in (``FileInfo``, ``FsInfo``), bytes out, and bytes in, typed
frozen records out.  Failures raise ``SmbError`` carrying the NTSTATUS to send.
Imports the standard library and ``smbcad.proto`` only.
"""

from smbcad.proto.fscc.access_check import Token, access_check, map_generic, maximal_access
from smbcad.proto.fscc.dir_info import (DIR_INFO_CLASSES, DirEntry, dir_class_has_short_name,
                                        dir_entry_fixed_size, encode_dir_entry,
                                        encode_directory_entries)
from smbcad.proto.fscc.ea import (FullEa, decode_full_ea_list, decode_get_ea_list,
                                  encode_full_ea_list, packed_ea_size)
from smbcad.proto.fscc.file_info import (FILE_INFO_CLASSES, FILE_INFO_ENCODERS, QueryContext,
                                         StreamInfo, encode_file_info, fit_output,
                                         query_file_info)
from smbcad.proto.fscc.fs_info import (DEFAULT_FS_ATTRIBUTES, FS_INFO_CLASSES, FS_INFO_ENCODERS,
                                       FsAttributes, FsInfo, encode_fs_info, query_fs_info)
from smbcad.proto.fscc.info_classes import (QUERY_FILE_ACCESS, SET_FILE_ACCESS, FileInfoClass,
                                            FsccStatus, FsInfoClass,
                                            fs_query_unsupported_status,
                                            fs_set_unsupported_status, missing_access,
                                            query_security_access, query_unsupported_status,
                                            set_security_access, set_unsupported_status)
from smbcad.proto.fscc.security import (Ace, AceFlags, AceType, Acl, SdControl,
                                        SecurityDescriptor, SecurityInformation, Sid,
                                        posix_from_sd, sd_from_posix, select_parts,
                                        unix_group_sid, unix_user_sid)
from smbcad.proto.fscc.set_info import (SET_INFO_DECODERS, DispositionFlags, FileAllocationInfo,
                                        FileBasicInfo, FileDispositionInfo,
                                        FileDispositionInfoEx, FileEndOfFileInfo,
                                        FileFullEaInfo, FileLinkInfo, FileModeInfo,
                                        FilePositionInfo, FileRenameInfo,
                                        FileValidDataLengthInfo, RenameFlags, decode_set_info)
from smbcad.proto.fscc.short_names import is_8dot3, short_name_in, short_names
from smbcad.proto.fscc.wildcard import has_wildcards, match_pattern

__all__ = [
    "Ace", "AceFlags", "AceType", "Acl", "DEFAULT_FS_ATTRIBUTES", "DIR_INFO_CLASSES",
    "DirEntry", "DispositionFlags", "FILE_INFO_CLASSES", "FILE_INFO_ENCODERS",
    "FS_INFO_CLASSES", "FS_INFO_ENCODERS", "FileAllocationInfo", "FileBasicInfo",
    "FileDispositionInfo", "FileDispositionInfoEx", "FileEndOfFileInfo", "FileFullEaInfo",
    "FileInfoClass", "FileLinkInfo", "FileModeInfo", "FilePositionInfo", "FileRenameInfo",
    "FileValidDataLengthInfo", "FsAttributes", "FsInfo", "FsInfoClass", "FsccStatus", "FullEa",
    "QUERY_FILE_ACCESS", "QueryContext", "RenameFlags", "SET_FILE_ACCESS", "SET_INFO_DECODERS",
    "SdControl", "SecurityDescriptor", "SecurityInformation", "Sid", "StreamInfo", "Token",
    "access_check", "decode_full_ea_list", "decode_get_ea_list", "decode_set_info",
    "dir_class_has_short_name", "dir_entry_fixed_size", "encode_dir_entry", "encode_directory_entries", "encode_file_info",
    "encode_fs_info", "encode_full_ea_list", "fit_output", "fs_query_unsupported_status",
    "fs_set_unsupported_status", "has_wildcards", "is_8dot3", "map_generic", "match_pattern",
    "maximal_access", "missing_access", "packed_ea_size", "posix_from_sd", "query_file_info",
    "query_fs_info", "query_security_access", "query_unsupported_status", "sd_from_posix",
    "select_parts", "set_security_access", "set_unsupported_status", "short_name_in",
    "short_names", "unix_group_sid", "unix_user_sid",
]
