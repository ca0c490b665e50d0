"""The lab's boot image: which kernel, which host tools, and the cached initramfs.

The guest boots the Debian kernel installed in ``/boot`` (the host does not
have to run it) with a small initramfs: a static busybox, ``guest/init.sh``
as ``/init`` and the kernel modules named in ``guest/modules.list`` plus
their dependencies.  Everything else the guest runs comes from the host's
root file system over 9p, so the image never has to be rebuilt for a change
to the project's code.

Two files are cached, in ``$SMBCA_LAB_CACHE`` or ``~/.cache/smbca/lab``:

- ``initrd-<kver>-<key>.cpio``: uncompressed newc archive, written here in
  Python (device nodes included, so no root and no ``cpio`` binary needed).
  ``key`` hashes the kernel, ``modules.dep``, busybox and the guest files,
  so any change to them builds a new one.
- ``vmlinux-<kver>-<key>``: the ELF kernel pulled out of the bzImage, booted
  through its PVH entry point.  That skips the in-guest xz decompression,
  about 2.5 s under TCG.  Kernels without ``CONFIG_PVH`` boot the bzImage.

A missing or stale cache is rebuilt on the next run (2-5 s); concurrent runs
serialise on a lock file and never see a half-written file.
"""

import fcntl
import gzip
import hashlib
import io
import lzma
import os
import platform
import shutil
import stat
import struct
import subprocess
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent.parent
GUEST_DIR = LAB_DIR / "guest"
BUILD_FORMAT = 1                  # bump when the archive layout changes
CACHE_MAX_AGE_S = 14 * 86400      # unused cache entries older than this are pruned


class LabUnavailable(Exception):
    """The host cannot run the lab; ``problems`` lists what is missing."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Host:
    """The host tools and kernel one lab run uses."""

    kernel_version: str
    qemu: str
    busybox: str
    cache_dir: Path

    @property
    def vmlinuz(self) -> Path:
        return Path("/boot") / f"vmlinuz-{self.kernel_version}"

    @property
    def modules_dir(self) -> Path:
        return Path("/lib/modules") / self.kernel_version


@dataclass(frozen=True)
class Image:
    """A bootable kernel + initramfs pair from the cache."""

    kernel: Path
    initrd: Path
    pvh: bool
    built_s: float | None       # seconds spent building, None when fully cached


# ---------------------------------------------------------------- host checks

def _kernel_versions() -> list[str]:
    boot = Path("/boot")
    found = []
    for image in sorted(boot.glob("vmlinuz-*")):
        version = image.name[len("vmlinuz-"):]
        if (Path("/lib/modules") / version / "modules.dep").is_file():
            found.append(version)
    return sorted(found, key=_version_key)


def _version_key(version: str) -> list:
    parts = []
    for token in version.replace("-", ".").split("."):
        parts.append((0, int(token), "") if token.isdigit() else (1, 0, token))
    return parts


def _is_static_elf(path: str) -> bool:
    """True for an ELF executable without a PT_INTERP (program interpreter)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:
                return False
            phoff, = struct.unpack_from("<Q", head, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


def default_cache_dir() -> Path:
    """``$SMBCA_LAB_CACHE``, else ``~/.cache/smbca/lab``, else (no writable
    home) ``/var/tmp/smbca-lab-<uid>``."""
    configured = os.environ.get("SMBCA_LAB_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    cache = Path(base) / "smbca" / "lab"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        return Path("/var/tmp") / f"smbca-lab-{os.getuid()}"
    return cache if os.access(cache, os.W_OK) else Path("/var/tmp") / f"smbca-lab-{os.getuid()}"


def find_host(kernel_version: str | None = None) -> Host:
    """The kernel, QEMU and busybox to use, or ``LabUnavailable`` saying why not.

    ``kernel_version`` (or ``$SMBCA_LAB_KERNEL``) picks a kernel; by default
    the running one if ``/boot`` has it with modules, else the newest there.
    """
    problems = []
    if platform.machine() != "x86_64":
        problems.append(f"the lab needs an x86_64 host (this is {platform.machine()})")
    qemu = os.environ.get("SMBCA_LAB_QEMU", "qemu-system-x86_64")
    qemu_path = shutil.which(qemu)
    if qemu_path is None:
        problems.append(f"{qemu} not found (apt-get install qemu-system-x86)")
    wanted = kernel_version or os.environ.get("SMBCA_LAB_KERNEL")
    versions = _kernel_versions()
    if wanted:
        version = wanted if wanted in versions else None
        if version is None:
            problems.append(f"no /boot/vmlinuz-{wanted} with /lib/modules/{wanted}/modules.dep")
    elif platform.release() in versions:
        version = platform.release()
    else:
        version = versions[-1] if versions else None
        if version is None:
            problems.append("no kernel in /boot with modules in /lib/modules "
                            "(apt-get install linux-image-amd64)")
    if version is not None and not os.access(f"/boot/vmlinuz-{version}", os.R_OK):
        problems.append(f"/boot/vmlinuz-{version} is not readable (Debian makes it 0600: run as root)")
    busybox = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if _is_static_elf(p)), None)
    if busybox is None:
        problems.append("no statically linked busybox (apt-get install busybox-static)")
    for tool, package in (("modprobe", "kmod"), ("modinfo", "kmod"),
                          ("sg_turs", "sg3-utils"), ("sg_raw", "sg3-utils")):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            problems.append(f"{tool} not found (apt-get install {package})")
    if problems:
        raise LabUnavailable(problems)
    return Host(kernel_version=version, qemu=qemu_path, busybox=busybox,
                cache_dir=default_cache_dir())


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


# ---------------------------------------------------------------- modules

@dataclass(frozen=True)
class Module:
    """One line of the guest's ``/lib/lab/modules.order``."""

    relpath: str        # under /lib/modules/<kver>/, decompressed name
    name: str
    flag: str           # req (listed), opt (listed optional / arch-specific), dep, soft
    group: str
    options: str
    source: Path


def _module_name(path: str) -> str:
    base = os.path.basename(path)
    return base.partition(".ko")[0].replace("-", "_")


class _Resolver:
    """``modules.list`` -> load order: dependencies (``modprobe --show-depends``)
    and soft dependencies (``modinfo -F softdep``, e.g. cifs -> gcm ccm cmac)
    before the module that needs them."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.order: list[Module] = []
        self.seen: set[str] = set()
        self.excluded: set[str] = set()

    def _show_depends(self, name: str) -> list[str] | None:
        result = subprocess.run([_tool("modprobe"), "-S", self.host.kernel_version,
                                 "--show-depends", name],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            return None
        return result.stdout.splitlines()

    def _softdeps(self, path: str) -> list[str]:
        result = subprocess.run([_tool("modinfo"), "-k", self.host.kernel_version,
                                 "-F", "softdep", path],
                                capture_output=True, text=True, check=False)
        return [token for token in result.stdout.split() if token not in ("pre:", "post:")]

    def add(self, wanted: str, flag: str, group: str, visiting: frozenset = frozenset()) -> bool:
        """Queue ``wanted`` (a module name or alias) and what it needs.  False
        when modprobe does not know it; True also for built-in modules."""
        lines = self._show_depends(wanted)
        if lines is None:
            return False
        for line in lines:
            if not line.startswith("insmod "):
                continue               # "builtin NAME"
            path, _, options = line[len("insmod "):].strip().partition(" ")
            name = _module_name(path)
            if name in self.seen or name in self.excluded or name in visiting:
                continue
            for soft in self._softdeps(path):
                self.add(soft, "soft", group, visiting | {name})
            if name in self.seen:
                continue
            self.seen.add(name)
            if _module_name(wanted) == name:
                this_flag = flag
            elif flag == "soft":
                this_flag = "soft"
            else:
                this_flag = "opt" if "/arch/" in path else "dep"
            relpath = os.path.relpath(path, self.host.modules_dir)
            for suffix in (".xz", ".zst", ".gz"):
                relpath = relpath.removesuffix(suffix)
            self.order.append(Module(relpath, name, this_flag, group, options.strip(), Path(path)))
        return True


def resolve_modules(host: Host, listing: Path = GUEST_DIR / "modules.list") -> list[Module]:
    """Parse ``modules.list`` (see its header) into the guest's load order."""
    resolver = _Resolver(host)
    group = "boot"
    missing = []
    for raw in listing.read_text().splitlines():
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "group":
            group = words[1]
        elif words[0] == "exclude":
            resolver.excluded.add(_module_name(words[1]))
        else:
            optional = words[1:] == ["optional"]
            if not resolver.add(words[0], "opt" if optional else "req", group) and not optional:
                missing.append(words[0])
    if missing:
        raise LabUnavailable([f"kernel {host.kernel_version} has no module {name}"
                              for name in missing])
    return resolver.order


def _module_bytes(source: Path, strip_signature: bool) -> bytes:
    data = source.read_bytes()
    if source.name.endswith(".xz"):
        data = lzma.decompress(data)
    elif source.name.endswith(".gz"):
        data = gzip.decompress(data)
    elif source.name.endswith(".zst"):
        data = subprocess.run(["zstd", "-qdc", str(source)], capture_output=True,
                              check=True).stdout
    # An appended signature ends in struct module_signature (12 bytes, the
    # big-endian signature length last) and the 28-byte magic.  Unsigned
    # modules skip a SHA-512 over the whole module at insmod, which is slow
    # under TCG; the kernel only taints itself unless MODULE_SIG_FORCE=y.
    magic = b"~Module signature appended~\n"
    if strip_signature and data.endswith(magic):
        sig_len, = struct.unpack(">I", data[-32:-28])
        data = data[:len(data) - 40 - sig_len]
    return data


# ---------------------------------------------------------------- cpio

class _Newc:
    """A minimal writer of the newc ("070701") cpio format the kernel unpacks."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.inode = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (self.inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        self.inode += 1
        self.out.write(b"070701" + b"".join(b"%08X" % v for v in fields) + encoded)
        self.out.write(b"\0" * (-(110 + len(encoded)) % 4))
        self.out.write(data)
        self.out.write(b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def chardev(self, name: str, major: int, minor: int, mode: int) -> None:
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.out.getvalue()


def build_initramfs(host: Host, modules: list[Module]) -> bytes:
    config = Path("/boot") / f"config-{host.kernel_version}"
    strip = not (config.is_file() and "CONFIG_MODULE_SIG_FORCE=y" in config.read_text())
    archive = _Newc()
    kver = host.kernel_version
    directories = {"bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp",
                   "run", "lab", "newroot", "luns", "etc", "lib", "lib/lab", "lib/modules",
                   f"lib/modules/{kver}"}
    for module in modules:
        parent = os.path.dirname(f"lib/modules/{kver}/{module.relpath}")
        while parent and parent not in directories:
            directories.add(parent)
            parent = os.path.dirname(parent)
    for name in sorted(directories):
        archive.directory(name)
    archive.chardev("dev/console", 5, 1, 0o600)
    archive.chardev("dev/null", 1, 3, 0o666)
    archive.file("bin/busybox", Path(host.busybox).read_bytes(), 0o755)
    archive.file("init", (GUEST_DIR / "init.sh").read_bytes(), 0o755)
    order = []
    for module in modules:
        archive.file(f"lib/modules/{kver}/{module.relpath}", _module_bytes(module.source, strip))
        order.append("\t".join((module.relpath, module.name, module.flag, module.group,
                                module.options)))
    archive.file("lib/lab/modules.order", ("\n".join(order) + "\n").encode())
    return archive.finish()


# ---------------------------------------------------------------- PVH kernel

_COMPRESSED = (("xz", b"\xfd7zXZ\x00"), ("gzip", b"\x1f\x8b\x08"),
               ("zstd", b"\x28\xb5\x2f\xfd"), ("lzma", b"\x5d\x00\x00\x00"))


def _decompress(kind: str, data: bytes) -> bytes:
    try:
        if kind == "xz":
            return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)
        if kind == "lzma":
            return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(data)
        if kind == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
        if kind == "zstd" and shutil.which("zstd"):
            return subprocess.run(["zstd", "-qdc"], input=data, capture_output=True,
                                  check=False).stdout
    except (lzma.LZMAError, zlib.error, EOFError):
        pass
    return b""


def has_pvh_note(elf: bytes) -> bool:
    """True for an ELF64 image with a XEN_ELFNOTE_PHYS32_ENTRY note (type 18,
    owner "Xen"): QEMU's ``-kernel`` boots such an image directly."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        return False
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _flags, offset, _vaddr, _paddr, size = struct.unpack_from(
            "<IIQQQQ", elf, phoff + i * phentsize)
        if p_type != 4:                                  # PT_NOTE
            continue
        pos, end = offset, offset + size
        while pos + 12 <= end:
            namesz, descsz, note_type = struct.unpack_from("<III", elf, pos)
            owner = elf[pos + 12:pos + 12 + namesz].rstrip(b"\0")
            if owner == b"Xen" and note_type == 18:
                return True
            pos += 12 + (namesz + 3 & ~3) + (descsz + 3 & ~3)
    return False


def extract_pvh_kernel(bzimage: bytes) -> bytes | None:
    """The ELF ``vmlinux`` inside a bzImage if it has a PVH entry, else None."""
    for kind, magic in _COMPRESSED:
        pos = bzimage.find(magic)
        while pos >= 0:
            elf = _decompress(kind, bzimage[pos:])
            if elf[:4] == b"\x7fELF":
                return elf if has_pvh_note(elf) else None
            pos = bzimage.find(magic, pos + 1)
    return None


# ---------------------------------------------------------------- cache

def _stat_line(path: Path) -> str:
    st = path.stat()
    return f"{path} {st.st_size} {st.st_mtime_ns}"


def image_key(host: Host) -> str:
    digest = hashlib.sha256()
    digest.update(f"format {BUILD_FORMAT} {host.kernel_version}\n".encode())
    for path in (host.vmlinuz, host.modules_dir / "modules.dep", Path(host.busybox)):
        digest.update(_stat_line(path).encode() + b"\n")
    for path in (GUEST_DIR / "init.sh", GUEST_DIR / "modules.list", Path(__file__)):
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _prune(cache: Path, keep: set[Path]) -> None:
    now = time.time()
    for entry in cache.iterdir():
        if entry in keep or not entry.is_file():
            continue
        if entry.name.startswith(("initrd-", "vmlinux-")) and now - entry.stat().st_mtime > CACHE_MAX_AGE_S:
            entry.unlink(missing_ok=True)


def ensure_image(host: Host, force: bool = False) -> Image:
    """The cached image for ``host``, built first if missing (or ``force``)."""
    cache = host.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    key = image_key(host)
    initrd = cache / f"initrd-{host.kernel_version}-{key}.cpio"
    kernel_key = hashlib.sha256(_stat_line(host.vmlinuz).encode()).hexdigest()[:12]
    vmlinux = cache / f"vmlinux-{host.kernel_version}-{kernel_key}"
    no_pvh = vmlinux.with_name(vmlinux.name + ".nopvh")
    started = time.monotonic()
    built = False
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if force or not initrd.is_file():
            _write_atomically(initrd, build_initramfs(host, resolve_modules(host)))
            built = True
        if force or not (vmlinux.is_file() or no_pvh.exists()):
            elf = extract_pvh_kernel(host.vmlinuz.read_bytes())
            if elf is None:
                no_pvh.touch()
            else:
                _write_atomically(vmlinux, elf)
            built = True
        for path in (initrd, vmlinux):
            if path.exists():
                os.utime(path)          # in use: keep it from being pruned
        _prune(cache, {initrd, vmlinux, no_pvh})
    pvh = vmlinux.is_file()
    return Image(kernel=vmlinux if pvh else host.vmlinuz, initrd=initrd, pvh=pvh,
                 built_s=time.monotonic() - started if built else None)
