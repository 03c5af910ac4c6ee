"""Matching a scan's findings to the findings already known in its scope (pure).

A scope is (environment, scan type, target, tool): two scanners never close each other's
findings, and a dependency scan never closes a SAST finding. For each incoming finding, in
order: the same fingerprint is the same finding; else an unmatched known finding with the same
content key (same rule and code, other path: a renamed file) when exactly one such candidate
exists; else it is new. After a complete scan, the known findings that nothing matched and that
are still open or accepted are resolved by that scan; a resolved finding matched again is
reopened. Accepted risks and false positives matched again keep their triage.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Known:
    """What the matcher needs of a stored finding."""

    id: object
    fingerprint: str
    content_key: str | None
    status: str
    shape: int = 0  # the caller's hash of what a report may change (severity, location)


@dataclass(frozen=True, slots=True)
class Incoming:
    fingerprint: str
    content_key: str | None


#: Statuses a complete scan that no longer reports the finding resolves.
RESOLVABLE = ("open", "accepted_risk")


class Matcher:
    """The streaming form: `see()` each incoming finding as it is parsed (a match or a new
    finding is known at once, so a large report never sits in memory); only findings that may
    be a known one in a renamed file (their content key is a known, still unmatched one's) are
    deferred to `settle()`."""

    def __init__(self, known: Mapping[str, Known]) -> None:
        self.known = known
        self.used: set[object] = set()
        # content key -> the known finding with it, or a list when several share it (memory:
        # most keys are unique, and a list per key would double the index)
        self.contents: dict[str, Known | list[Known]] = {}
        for k in known.values():
            if k.content_key:
                there = self.contents.get(k.content_key)
                if there is None:
                    self.contents[k.content_key] = k
                elif isinstance(there, list):
                    there.append(k)
                else:
                    self.contents[k.content_key] = [there, k]

    def see(self, item: Incoming) -> tuple[str, object | None]:
        """("matched", id), ("deferred", None) or ("new", None)."""
        hit = self.known.get(item.fingerprint)
        if hit is not None and hit.id not in self.used:
            self.used.add(hit.id)
            return "matched", hit.id
        if item.content_key and item.content_key in self.contents:
            return "deferred", None
        return "new", None

    def settle(self, deferred: list[Incoming]) -> list[object | None]:
        """For each deferred finding, the known id it continues (renamed file) or None (new):
        a content key matches when exactly one unmatched known and one deferred finding have it."""
        wanted: dict[str, int] = defaultdict(int)
        for item in deferred:
            wanted[item.content_key or ""] += 1
        out: list[object | None] = []
        for item in deferred:
            key = item.content_key or ""
            there = self.contents.get(key, [])
            found = there if isinstance(there, list) else [there]
            candidates = [k for k in found if k.id not in self.used]
            if len(candidates) == 1 and wanted[key] == 1:
                self.used.add(candidates[0].id)
                out.append(candidates[0].id)
            else:
                out.append(None)
        return out

    def unmatched(self) -> list[Known]:
        """Known findings nothing matched (a complete scan resolves the RESOLVABLE ones)."""
        return [k for k in self.known.values() if k.id not in self.used]


@dataclass
class Plan:
    matched: dict[int, object] = field(default_factory=dict)  # incoming index -> known id
    renamed: dict[int, object] = field(default_factory=dict)  # the matches through a rename
    new: list[int] = field(default_factory=list)
    reopened: list[object] = field(default_factory=list)
    resolved: list[object] = field(default_factory=list)


def plan(known: Mapping[str, Known], incoming: Iterable[Incoming], *, complete: bool) -> Plan:
    """Decide what a scan does to its scope's findings (see the module docstring)."""
    out = Plan()
    matcher = Matcher(known)
    items = list(incoming)
    later: list[int] = []
    for i, item in enumerate(items):
        verdict, found = matcher.see(item)
        if verdict == "matched":
            out.matched[i] = found
        elif verdict == "deferred":
            later.append(i)
        else:
            out.new.append(i)
    for i, found in zip(later, matcher.settle([items[i] for i in later]), strict=True):
        if found is None:
            out.new.append(i)
        else:
            out.matched[i] = out.renamed[i] = found
    status = {k.id: k.status for k in known.values()}
    out.reopened = [found for found in out.matched.values() if status[found] == "resolved"]
    out.new.sort()
    if complete:
        out.resolved = [k.id for k in matcher.unmatched() if k.status in RESOLVABLE]
    return out
