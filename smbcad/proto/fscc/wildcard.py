"""QUERY_DIRECTORY search patterns ([MS-FSA] 2.1.4.3, 2.1.4.4).

``*`` matches zero or more characters, ``?`` exactly one.  The DOS wildcards that
Win32 rewrites patterns into are honoured too:

* ``<`` (DOS_STAR) matches zero or more characters but never eats the final ``.``
  of the name;
* ``>`` (DOS_QM) matches one character, or zero at a ``.`` or the end of the name;
* ``"`` (DOS_DOT) matches a ``.``, or zero characters at the end of the name.

The matcher simulates the non-deterministic automaton the algorithm describes:
a set of live positions in the pattern advanced one name character at a time,
with the DOS wildcards' empty moves depending on the character about to be read.
Comparison is per character and case-insensitive by default (no Unicode case
expansion such as "ß" to "SS", as the NTFS upcase table has none).
"""

import operator
from collections.abc import Callable

DOS_STAR = "<"
DOS_QM = ">"
DOS_DOT = '"'
WILDCARDS = frozenset("*?" + DOS_STAR + DOS_QM + DOS_DOT)


def has_wildcards(pattern: str) -> bool:
    """True if ``pattern`` contains any of the five wildcard characters ([MS-FSA] 2.1.4.3)."""
    return any(ch in WILDCARDS for ch in pattern)


def _same_ignoring_case(a: str, b: str) -> bool:
    return a == b or a.upper() == b.upper()


def match_pattern(pattern: str, name: str, ignore_case: bool = True) -> bool:
    """Is ``name`` in the language of ``pattern`` ([MS-FSA] 2.1.4.4)?"""
    # Part 1: special cases.
    if not name or not pattern:
        return not name and not pattern
    if pattern in ("*", "*.*"):
        return True
    eq: Callable[[str, str], bool] = _same_ignoring_case if ignore_case else operator.eq
    if not has_wildcards(pattern):
        return len(pattern) == len(name) and all(map(eq, pattern, name))
    if pattern[0] == "*" and not has_wildcards(pattern[1:]):
        tail = pattern[1:]
        return len(name) >= len(tail) and all(map(eq, tail, name[len(name) - len(tail):]))
    # Part 2: the general case.
    return _run_automaton(pattern, name, eq)


def _run_automaton(pattern: str, name: str, eq: Callable[[str, str], bool]) -> bool:
    """Advance the set of live pattern positions over ``name`` and one end-of-name step."""
    end_state = len(pattern)
    last_dot = name.rfind(".")
    live = {0}
    for pos in range(len(name) + 1):
        at_end = pos == len(name)
        ch = "" if at_end else name[pos]
        reached: set[int] = set()      # live positions plus their empty moves
        after: set[int] = set()        # positions after consuming ``ch``
        pending = list(live)
        moved_to_end = False           # pattern exhausted by an empty move this step
        while pending:
            state = pending.pop()
            if state in reached:
                continue
            reached.add(state)
            if state == end_state:
                continue
            p = pattern[state]
            skip = False               # may this position be passed without input?
            if p == "*":
                skip = True
                if not at_end:
                    after.add(state)
            elif p == DOS_STAR:
                skip = True
                # May consume anything but the name's last period.
                if not at_end and (ch != "." or pos < last_dot):
                    after.add(state)
            elif p == DOS_QM:
                if at_end or ch == ".":
                    skip = True
                else:
                    after.add(state + 1)
            elif p == DOS_DOT:
                if at_end:
                    skip = True
                elif ch == ".":
                    after.add(state + 1)
            elif not at_end and (p == "?" or eq(p, ch)):
                after.add(state + 1)
            if skip:
                pending.append(state + 1)
                moved_to_end |= state + 1 == end_state
        if at_end:
            return end_state in reached
        if moved_to_end and pos == len(name) - 1:
            # Windows' FsRtlIsNameInExpression records "pattern exhausted" when an
            # empty move reaches the end, and accepts it once the name is done: a
            # trailing "<" or ">" run thus matches a name whose last character is
            # the (unconsumed) final ".", e.g. "<" matches "a.".  Kept for parity.
            return True
        if not after:
            return False
        live = after
    return False  # unreachable: the loop always returns at the end-of-name step
