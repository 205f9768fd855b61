#!/usr/bin/env python3
"""`make lint`'s checks of what rustc and clippy do not see.

1. Paths named in comments exist. A comment (Rust, C, shell, Makefile,
   Python) that names a file or folder of this repository — src/..., bpf/...,
   include/..., tests/..., scripts/... — must name one that is there: a
   comment that points at a moved file sends the next reader nowhere.

2. The import graph of src/ runs downhill and has no circle. Each top
   module has a floor (LAYERS, top first); a module may use only modules on
   its own floor or below. Within a floor, the graph of files (a file uses
   another by `crate::a::b`, `super::b`, `udplb::a` or a nested use group)
   has no cycle, across the modules of the floor too. Test-only items
   (#[cfg(test)]) are left out wherever they sit in a file.

Exits 1 listing every violation, else prints one line per check.
"""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Top module -> floor (higher uses lower). main.rs is the top.
LAYERS = {
    "main": 6,
    # The command line only builds config::settings::Settings: the daemon,
    # below it, never sees clap's flags.
    "cli": 5,
    "daemon": 4,
    "datapath": 3,
    "plan": 2,
    "config": 1,
    "dns": 1,
    "abi": 0,
    "bpf": 0,
    "error": 0,
    "log": 0,
}

# A comment that points outside the repository (the project's notes of its
# own machines) sends a reader of a clone nowhere either.
OUTSIDE_RE = re.compile(r"(?<![\w./-])((?:\.\./)*shared/notes/[\w./-]*\w)")
PATH_RE = re.compile(r"(?<![\w./-])((?:src|bpf|include|tests|scripts|\.ci)/[\w./{},*-]*[\w/])")


def tracked():
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [p for p in out.stdout.split("\n") if p]


def comments(path, text):
    """(line number, comment text) of every comment in a source file."""
    suffix = Path(path).suffix
    name = Path(path).name
    found = []
    if suffix in (".rs", ".c", ".h", ".js") or name.endswith(".bpf.c"):
        for m in re.finditer(r"//[^\n]*|/\*.*?\*/", text, re.S):
            found.append((text.count("\n", 0, m.start()) + 1, m.group()))
    elif suffix in (".sh", ".py", ".toml", ".service", ".conf") or name in ("Makefile", "run"):
        for i, line in enumerate(text.split("\n"), 1):
            if "#" in line:
                found.append((i, line[line.index("#"):]))
    return found


def expand(p):
    """A path with {a,b} alternatives or a * glob: every spelled-out form."""
    m = re.search(r"\{([^}]*)\}", p)
    if m:
        out = []
        for alt in m.group(1).split(","):
            out += expand(p[: m.start()] + alt + p[m.end():])
        return out
    return [p]


def exists(p):
    p = p.rstrip(".,:;)")
    if "*" in p:
        return any(ROOT.glob(p))
    return (ROOT / p).exists()


def check_paths(files):
    bad = []
    for f in files:
        if not (ROOT / f).is_file():
            continue
        try:
            text = (ROOT / f).read_text()
        except UnicodeDecodeError:
            continue
        for line, c in comments(f, text):
            for m in OUTSIDE_RE.finditer(c):
                bad.append(f"{f}:{line}: names {m.group(1)}, which is outside the repository")
            for m in PATH_RE.finditer(c):
                for p in expand(m.group(1)):
                    # Generated or per-run paths live under target/, which
                    # the pattern does not match; /proc, /sys are absolute.
                    if not exists(p):
                        bad.append(f"{f}:{line}: names {p}, which does not exist")
    return bad


def module_of(path):
    """src/datapath/attach.rs -> ('datapath', 'attach'); src/lib.rs -> ()."""
    rel = Path(path).relative_to("src").with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts == ["lib"]:
        return ()
    return tuple(parts)


def resolve(modules, mod, ref):
    """The longest known module a reference `a::b::c` names from `mod`."""
    parts = ref.split("::")
    if parts[0] == "crate" or parts[0] == "udplb" or parts[0] == "$crate":
        parts = parts[1:]
    elif parts[0] == "super":
        base = list(mod)
        while parts and parts[0] == "super":
            parts, base = parts[1:], base[:-1]
        parts = base + parts
    elif parts[0] == "self":
        parts = list(mod) + parts[1:]
    else:
        return None
    for n in range(len(parts), 0, -1):
        if tuple(parts[:n]) in modules:
            return tuple(parts[:n])
    return None


def without_test_items(code):
    """`code` without its #[cfg(test)] items (a `mod tests { ... }`, or a
    single test-only fn or const anywhere in the file): the attribute up to
    the end of the item's braces, or its `;`."""
    out, i = [], 0
    while True:
        j = code.find("#[cfg(test)]", i)
        if j < 0:
            out.append(code[i:])
            return "".join(out)
        out.append(code[i:j])
        k = j + len("#[cfg(test)]")
        # The item ends at its first top-level `;` or at the brace that
        # closes its first `{`.
        depth, end = 0, len(code)
        while k < len(code):
            ch = code[k]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    end = k + 1
                    break
            elif ch == ";" and depth == 0:
                end = k + 1
                break
            k += 1
        i = end


def use_paths(tree, prefix=""):
    """The paths a use tree names: `a::{b, c::{d, e as f}}` -> a::b,
    a::c::d, a::c::e (`self` in a group names the group's base)."""
    tree = tree.strip()
    brace = tree.find("{")
    if brace < 0:
        path = tree.split(" as ")[0].strip()
        if path == "self":
            return [prefix.rstrip(":")] if prefix else []
        return [prefix + path] if path else []
    base = tree[:brace]
    inner = tree[brace + 1 : tree.rfind("}")]
    items, depth, start = [], 0, 0
    for n, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(inner[start:n])
            start = n + 1
    items.append(inner[start:])
    out = []
    for item in items:
        out += use_paths(item, prefix + base)
    return out


def check_imports(files):
    srcs = [f for f in files if f.startswith("src/") and f.endswith(".rs")]
    modules = {module_of(f): f for f in srcs}
    modules[("bpf",)] = "src/lib.rs"  # the generated skeleton
    edges = {}
    # Between two top modules of one floor (config, dns): one may use the
    # other, not both.
    tops = {}
    bad = []
    for f in srcs:
        mod = module_of(f)
        text = (ROOT / f).read_text()
        code = re.sub(r"//[^\n]*", "", text)
        # Only what the code uses: drop the tests, which may reach anywhere.
        code = without_test_items(code)
        refs = set(re.findall(r"\b((?:crate|super|self|udplb|\$crate)(?:::\w+)+)", code))
        # `use crate::a::{b, c::{d, e}}` names a::b, a::c::d and a::c::e.
        for tree in re.findall(r"\buse\s+([^;]*);", code):
            refs.update(r for r in use_paths(tree) if re.match(r"(crate|super|self|udplb)\b", r))
        top = mod[0] if mod else ("main" if f == "src/main.rs" else None)
        for ref in refs:
            target = resolve(modules, mod if f != "src/main.rs" else (), ref)
            if not target or target == mod:
                continue
            if top is None:
                continue
            t_top = target[0]
            if LAYERS.get(t_top, 0) > LAYERS.get(top, 0):
                bad.append(f"{f}: uses {'::'.join(target)} ({ref}), a floor above {top}")
            # One floor: files of one module, or of two modules that share a
            # floor (config and dns), may not go round in a circle.
            if LAYERS.get(t_top, 0) == LAYERS.get(top, 0) and f != "src/main.rs":
                edges.setdefault(mod, set()).add(target)
                if t_top != top:
                    tops.setdefault(top, {})[t_top] = f"{f} ({ref})"
    for a in sorted(tops):
        for b, where in sorted(tops[a].items()):
            if a < b and a in tops.get(b, {}):
                bad.append(f"circle: {a} -> {b} ({where}) -> {a} ({tops[b][a]})")
    # Cycles among files of one floor, by depth-first search. A module
    # that uses its own children (mod.rs using attach) is the parent's
    # business and no cycle; a child using its parent's items is.
    def parent_child(a, b):
        return len(a) < len(b) and b[: len(a)] == a
    state = {}
    stack = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if parent_child(n, m):
                continue
            if state.get(m) == 1:
                cyc = stack[stack.index(m):] + [m]
                bad.append("circle: " + " -> ".join("::".join(x) for x in cyc))
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(edges):
        if n not in state:
            visit(n)
    return bad


def main():
    files = tracked()
    paths = check_paths(files)
    imports = check_imports(files)
    for b in paths + imports:
        print(f"lint: {b}", file=sys.stderr)
    if paths or imports:
        return 1
    print("lint: every path named in a comment exists")
    print("lint: src/ imports run downhill, no circle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
