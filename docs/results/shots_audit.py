"""The before / after tables of ``docs/results/shots_audit.md`` from two runs of ``moodstream bench
shots`` (:mod:`trainer.bench.shots`): the shipped rule's (``shots_audit.json``) and the first rule's,
histograms only with no cut within 8 frames of the last (``shots_audit_before.json``: the same bench run
from a worktree of commit 98004a1, see shots_audit.md)::

    .venv/bin/python docs/results/shots_audit.py docs/results/shots_audit_before.json docs/results/shots_audit.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

CLASSES = {  # edit -> its class in the tables
    "hamilton (as shot)": "footage as shot", "street (as shot)": "footage as shot", "clip (as shot)": "footage as shot",
    "hard cuts": "hard cuts", "animated GIF": "hard cuts",
    "jump cut": "one colour", "jump cut street": "one colour", "mirrored": "one colour",
    "mirrored street": "one colour",
    "closer": "one colour", "closer street": "one colour", "shifted": "one colour", "punch-in": "one colour",
    "punch-in street": "one colour",
    "short shots": "short shots", "short similar": "short shots", "one frame": "short shots",
    "one frame similar": "short shots",
    "fade through black": "fade, dissolve", "dissolve 10": "fade, dissolve", "dissolve 20": "fade, dissolve",
    "flash 1 frame": "flash, strobe, light", "flash 2 frames": "flash, strobe, light", "strobe": "flash, strobe, light",
    "light on": "flash, strobe, light", "light on street": "flash, strobe, light",
    "slow zoom": "zoom, pan", "pan": "zoom, pan",
}


def by_class(report: dict) -> dict[str, list[int]]:
    """class -> [transitions, found, false]"""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in report["detection"]:
        c = out[CLASSES.get(r["edit"], r["edit"])]
        c[0] += r["cuts"] + r["gradual"]
        c[1] += r["cuts_found"] + r["gradual_found"]
        c[2] += len(r["false"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    args = ap.parse_args()
    before, after = (json.loads(p.read_text()) for p in (args.before, args.after))
    lines = ["| class | transitions | found before | false before | found now | false now |",
             "|---|---:|---:|---:|---:|---:|"]
    b, a = by_class(before), by_class(after)
    for name in dict.fromkeys(CLASSES.values()):
        lines.append(f"| {name} | {a[name][0]} | {b[name][1]} | {b[name][2]} | {a[name][1]} | {a[name][2]} |")
    tb, ta = before["totals"], after["totals"]
    lines.append(f"| **all** (MP4 + WebM + GIF) | {ta['transitions']} | {tb['found']} | {tb['false']} | {ta['found']} "
                 f"| {ta['false']} |")
    lines += ["", f"Precision {tb['precision']:.3f} -> {ta['precision']:.3f}, recall {tb['recall']:.3f} -> "
              f"{ta['recall']:.3f}; false cuts on the unedited footage ({ta['unedited_minutes'] * 60:.1f} s): "
              f"{tb['unedited_false_per_min']:.2f} -> {ta['unedited_false_per_min']:.2f} a minute.", "",
              "| edit (MP4) | via | flags | shots | tracks | tracks across a cut | broken at a flash / light "
              "| people (per shot) |", "|---|---|---|---|---|---|---|---|"]

    def people(r: dict) -> str:
        return f"{r['people']} (" + ", ".join(f"{s}: {n}" for s, n in r["people_per_shot"].items()) + ")"

    for x, y in zip(before["tracks"], after["tracks"]):
        assert (x["file"], x["via"], x["flags"]) == (y["file"], y["via"], y["flags"])
        mark = "**" if (x["across"], x["broken_at_events"]) != (y["across"], y["broken_at_events"]) else ""
        lines.append(f"| {mark}{y['edit']}{mark} | {y['via']} | {y['flags'] or '-'} | {x['shots']} -> {y['shots']} "
                     f"| {x['tracks']} -> {y['tracks']} | {x['across']} -> {y['across']} "
                     f"| {x['broken_at_events']} -> {y['broken_at_events']} | {people(x)} -> {people(y)} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
