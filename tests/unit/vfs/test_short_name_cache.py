"""vfs/short_name_cache.py: a kept 8.3 map is the one short_names computes,
reused only for the very same names, and the cache stays within its bounds."""

from smbcad.proto.fscc import short_names
from smbcad.vfs.short_name_cache import ShortNameCache


def _names(count: int, stem: str = "Long Entry Name") -> list[str]:
    return [".", ".."] + sorted(f"{stem} {index:05d}.data" for index in range(count))


def test_a_kept_map_is_reused_only_for_the_same_names(monkeypatch):
    cache = ShortNameCache(min_names=4)
    names = _names(10)
    first = cache.short_names(names)
    assert first == short_names(names)
    assert cache.short_names(list(names)) is first          # equal list, same map
    # One name more: the map is computed again, and it names the newcomer.
    grown = sorted(names[2:] + ["Long Entry Name 00003.datb"])
    changed = cache.short_names([".", ".."] + grown)
    assert changed is not first
    assert changed == short_names([".", ".."] + grown)
    assert "Long Entry Name 00003.datb" in changed


def test_small_directories_are_not_kept():
    cache = ShortNameCache(min_names=50)
    names = _names(10)
    assert cache.short_names(names) == short_names(names)
    assert len(cache) == 0


def test_bounded_by_names_and_directories():
    cache = ShortNameCache(max_names=100, max_dirs=3, min_names=4)
    for index in range(5):
        cache.short_names(_names(20, f"Directory {index} entry"))
    assert len(cache) == 3                                  # max_dirs
    cache.short_names(_names(60, "Big one"))
    assert len(cache) == 2                                  # 62 + 22 + 22 > 100: one went
    too_big = _names(200)
    assert cache.short_names(too_big) == short_names(too_big)
    assert len(cache) == 2                                  # over max_names: not kept
