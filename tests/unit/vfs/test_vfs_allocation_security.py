"""AllocationSize from data extents (``_fiemap``), and the VFS calls behind
stored-descriptor access checks, 8.3 names and owner changes."""

import os
import struct

import pytest

from smbcad.vfs import _fiemap

BIG_XATTR = b"x" * 3000          # never fits in an ext4 inode: forces an xattr block


def _user_xattrs(path) -> bool:
    try:
        os.setxattr(path, "user.smbca.probe", b"1")
        os.removexattr(path, "user.smbca.probe")
    except OSError:
        return False
    return True


def _reply(extents):
    """A FIEMAP reply with (logical, length, flags) extents."""
    header = struct.pack("<QQIIII", 0, 0, 0, len(extents), len(extents), 0)
    body = b"".join(struct.pack("<QQQ16xI12x", logical, 0, length, flags)
                    for logical, length, flags in extents)
    return header + body


def test_parse_extents():
    assert _fiemap.parse_extents(_reply([])) == (0, None)
    assert _fiemap.parse_extents(_reply([(0, 4096, 0), (8192, 4096, 0)])) == (8192, 12288)
    last = _fiemap.FIEMAP_EXTENT_LAST
    assert _fiemap.parse_extents(_reply([(0, 4096, 0), (8192, 8192, last)])) == (12288, None)


def test_extent_request_layout():
    request = _fiemap.extent_request(4096, 2)
    assert len(request) == 32 + 2 * 56
    assert struct.unpack_from("<QQIIII", request) == (4096, 2**64 - 1 - 4096, 0, 0, 2, 0)


def test_needs_extent_map(tmp_path):
    dense = tmp_path / "dense"
    dense.write_bytes(b"a" * 5000)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert not _fiemap.needs_extent_map(os.stat(dense))
    assert not _fiemap.needs_extent_map(os.stat(empty))


def test_xattr_block_is_not_allocation(fs, layout):
    handle = fs.open(("spill",), write=True, create=True)
    try:
        path = layout.share / "spill"
        if not _user_xattrs(path):
            pytest.skip("no user xattrs here")
        os.setxattr(path, "user.test.big", BIG_XATTR)
        if os.stat(path).st_blocks == 0:
            pytest.skip("this file system keeps the xattr without a block")
        assert fs.stat(handle).allocation_size == 0
        assert fs.lookup(("spill",)).info.allocation_size == 0
        root = fs.open(())
        try:
            assert fs.entry_info(root, "spill").allocation_size == 0
        finally:
            root.close()
        fs.write(handle, 0, b"d" * 10)
        assert fs.stat(handle).allocation_size == os.stat(path).st_blksize
        fs.allocate(handle, 1 << 20)
        assert fs.stat(handle).allocation_size >= 1 << 20
    finally:
        handle.close()


def test_stored_security_at_and_sibling_names(fs, layout):
    directory = fs.mkdir(("dir",))
    directory.close()
    handle = fs.open(("dir", "a long name.txt"), write=True, create=True)
    try:
        assert fs.stored_security_at("dir/a long name.txt") is None
        assert fs.stored_security_at("dir/missing") is None
        if os.geteuid() != 0 or not _user_xattrs(layout.share / "dir"):
            pytest.skip("descriptors live in security.* xattrs: root and xattrs needed")
        fs.set_security(handle, b"\x01\x00\x04\x80" + bytes(16))
        assert fs.stored_security_at("dir/a long name.txt") == b"\x01\x00\x04\x80" + bytes(16)
        assert fs.stored_security_at("DIR/A Long Name.TXT") == b"\x01\x00\x04\x80" + bytes(16)
        (layout.share / "dir" / "other").write_bytes(b"")
        assert sorted(fs.sibling_names("dir/a long name.txt")) == ["a long name.txt", "other"]
        assert fs.sibling_names("nowhere/x") == []
    finally:
        handle.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_set_posix_owner(fs, layout):
    handle = fs.open(("owned",), write=True, create=True)
    try:
        fs.set_posix_owner(handle, 1234, None)
        st = os.stat(layout.share / "owned")
        assert (st.st_uid, st.st_gid) == (1234, os.getegid())
        fs.set_posix_owner(handle, None, 4321)
        assert fs.posix_identity(handle)[:2] == (1234, 4321)
        assert fs.default_owner() == (os.geteuid(), os.getegid())
    finally:
        handle.close()
