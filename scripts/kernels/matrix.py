#!/usr/bin/env python3
"""Prints the matrix kernel x test binary from target/kernels/results/K/
(written by scripts/kernels/guest.sh) as Markdown, then each failed test
with its key error line. Exit status 1 when anything failed, died, timed
out or did not run.

A test that needs something a kernel lacks must fail naming it: a failure
whose message says "kernel lacks" or "needs Linux N" counts as refused by
name, apart from plain failures (still non-zero: nothing passes silently).

    matrix.py KERNEL... -- BINARY...
"""
import re
import sys
from pathlib import Path

REFUSAL = re.compile(r"kernel lacks|needs Linux \d")
args = sys.argv[1:]
sep = args.index("--")
kernels, binaries = args[:sep], args[sep + 1:]
root = Path("target/kernels/results")


def read(path, default=""):
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return default


def key_lines(log):
    """Each failed test's panic message: its first line, and the line after
    it when it ends in ':' ("2 of 2 cases failed:" then the first case)."""
    keys, current, lines = {}, None, None
    for line in log.splitlines():
        m = re.match(r"---- (\S+) stdout ----", line)
        if m:
            if current and lines and current not in keys:
                keys[current] = " ".join(lines)[:300]
            current, lines = m.group(1), None
            continue
        if not current or current in keys:
            continue
        if lines is None:
            if "panicked at" in line:
                rest = line.split("panicked at", 1)[1].strip()
                # Newer Rust puts the message on the lines after the place.
                lines = [] if rest.endswith(":") else [rest]
        elif line.startswith("note: run with") or line == "failures:":
            keys[current] = " ".join(lines)[:300]  # the message ended
        elif line.strip():
            lines.append(line.strip())
        if lines and (len(lines) == 2 or not lines[0].endswith(":")):
            keys[current] = " ".join(lines)[:300]
    return keys


def cell(k, b):
    d = root / k
    log = read(d / f"{b}.log")
    rc = read(d / f"{b}.rc", None)
    secs = read(d / f"{b}.secs", "?")
    if rc is None:
        return "not run", []
    failed = re.findall(r"^test (\S+) \.\.\. FAILED$", log, re.M)
    keys = key_lines(log)
    refused = [t for t in failed if REFUSAL.search(keys.get(t, ""))]
    plain = [t for t in failed if t not in refused]
    notes = [(t, keys.get(t, "(no panic message)")) for t in failed]
    res = re.search(r"^test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", log, re.M)
    if rc in ("124", "137"):
        text = f"**timeout** ({secs} s), {len(failed)} failed before"
    elif not res:
        text = f"**died** (exit {rc}, {secs} s)"
    else:
        text = f"{res.group(1)} passed"
        if plain:
            text += f", **{len(plain)} failed**"
        if refused:
            text += f", **{len(refused)} refused**"
        if res.group(3) != "0":
            text += f", {res.group(3)} ignored"
        text += f" ({secs} s)"
    return text, notes


bad = False
print("| test binary | " + " | ".join(f"{k} ({read(root / k / 'uname', '?')})" for k in kernels) + " |")
print("|---" * (len(kernels) + 1) + "|")
details = []
for b in binaries:
    row = []
    for k in kernels:
        text, notes = cell(k, b)
        bad |= "**" in text or text == "not run"
        row.append(text)
        details += [f"- {k} {b}::{t}: {why}" for t, why in notes]
    print(f"| {b} | " + " | ".join(row) + " |")
print("| total time | " + " | ".join(f"{read(root / k / 'total.secs', '?')} s" for k in kernels) + " |")
if details:
    print("\nFailed tests, with the start of their panic message:\n")
    print("\n".join(details))
sys.exit(1 if bad else 0)
