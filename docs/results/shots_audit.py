"""The before / after tables of ``docs/results/shots_audit.md`` from runs of ``moodstream bench shots``
(:mod:`trainer.bench.shots`): the shipped rule's (``shots_audit.json``), the first rule's, histograms only
with no cut within 8 frames of the last (``shots_audit_before.json``: the same bench run from a worktree of
commit 98004a1, see shots_audit.md), and optionally the audit's first rule, the pictures compared unshifted
(``--unshifted shots_audit_unshifted.json``, from a worktree of f367a09, cuts only)::

    .venv/bin/python docs/results/shots_audit.py docs/results/shots_audit_before.json docs/results/shots_audit.json \
        --unshifted docs/results/shots_audit_unshifted.json

An edit the before run did not have (the bench grew) shows "-" there.
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
    "hand-held": "hand-held, whip pan", "hand-held street": "hand-held, whip pan", "whip pan": "hand-held, whip pan",
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
    ap.add_argument("--unshifted", type=Path, help="the audit's first rule's run (pictures compared unshifted)")
    args = ap.parse_args()
    before, after = (json.loads(p.read_text()) for p in (args.before, args.after))
    runs = [("first", before)] + ([("unshifted", json.loads(args.unshifted.read_text()))] if args.unshifted else []) \
        + [("now", after)]
    classes = [by_class(r) for _, r in runs]
    seen = [{r["edit"] for r in run["detection"]} for _, run in runs]
    lines = ["| class | transitions | " + " | ".join(f"found {n} | false {n}" for n, _ in runs) + " |",
             "|---|---:|" + "---:|---:|" * len(runs)]
    for name in dict.fromkeys(CLASSES.values()):
        had = [any(CLASSES.get(e) == name for e in s) for s in seen]
        cells = " | ".join(f"{c[name][1]} | {c[name][2]}" if h else "- | -" for c, h in zip(classes, had))
        lines.append(f"| {name} | {classes[-1][name][0]} | {cells} |")
    cells = " | ".join(f"{r['totals']['found']} | {r['totals']['false']}" for _, r in runs)
    lines.append(f"| **all** (MP4 + WebM + GIF) | {after['totals']['transitions']} | {cells} |")
    lines += ["", "Precision " + " -> ".join(f"{r['totals']['precision']:.3f}" for _, r in runs) + ", recall "
              + " -> ".join(f"{r['totals']['recall']:.3f}" for _, r in runs) + " (" + " -> ".join(n for n, _ in runs)
              + f"); false cuts on the unedited footage ({after['totals']['unedited_minutes'] * 60:.1f} s): "
              + " -> ".join(f"{r['totals']['unedited_false_per_min']:.2f}" for _, r in runs) + " a minute.", "",
              "| edit (MP4) | via | flags | shots | tracks | tracks across a cut | broken at a flash / light "
              "| people (per shot) |", "|---|---|---|---|---|---|---|---|"]

    def people(r: dict) -> str:
        return f"{r['people']} (" + ", ".join(f"{s}: {n}" for s, n in r["people_per_shot"].items()) + ")"

    first = {(x["file"], x["via"], x["flags"]): x for x in before["tracks"]}
    for y in after["tracks"]:
        x = first.get((y["file"], y["via"], y["flags"]))
        if x is None:  # an edit the first run did not have
            lines.append(f"| {y['edit']} | {y['via']} | {y['flags'] or '-'} | - -> {y['shots']} | - -> {y['tracks']} "
                         f"| - -> {y['across']} | - -> {y['broken_at_events']} | - -> {people(y)} |")
            continue
        mark = "**" if (x["across"], x["broken_at_events"]) != (y["across"], y["broken_at_events"]) else ""
        lines.append(f"| {mark}{y['edit']}{mark} | {y['via']} | {y['flags'] or '-'} | {x['shots']} -> {y['shots']} "
                     f"| {x['tracks']} -> {y['tracks']} | {x['across']} -> {y['across']} "
                     f"| {x['broken_at_events']} -> {y['broken_at_events']} | {people(x)} -> {people(y)} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
