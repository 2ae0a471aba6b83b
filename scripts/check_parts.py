#!/usr/bin/env python3
"""Prints the include graph between the parts of src/ and fails (exit 1) on a violation.

A part is a folder src/<part>/; its public headers are src/<part>/include/microlm/*.h. The arrows
a part may follow are the DEPS of its microlm_part(...) call in CMakeLists.txt (and the PUBLIC
libraries of microlm_train). Checked:
  - every #include "microlm/x.h" in a part names its own header or one of a declared dependency
    (directly: a transitive arrow must be declared where it is used);
  - no part includes another part's private header (a quoted include with a folder in it);
  - the declared arrows have no cycle;
  - the copies the one-owner redesign removed stay removed (one mmap wrapper, one CRC-32, one
    timing helper, one set of sentence and line-break rules).
Usage: scripts/check_parts.py [--quiet]
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
# Parts that no other part may depend on: the programs at the top.
TOP = {"cli", "train"}


def declared_deps():
    text = open(os.path.join(ROOT, "CMakeLists.txt")).read()
    deps = {}
    for m in re.finditer(r"^\s*microlm_part\((\w+)([^)]*)\)", text, re.M):
        name, rest = m.group(1), m.group(2)
        d = re.search(r"DEPS\s+([\w\s]+?)(?:\s+EXCLUDE|$)", rest.strip())
        deps.setdefault(name, set()).update(d.group(1).split() if d else [])
    m = re.search(r"target_link_libraries\(microlm_train PUBLIC ((?:microlm_\w+\s*)+)", text)
    deps["train"] = {x[len("microlm_"):] for x in m.group(1).split()} if m else set()
    return deps


def header_owners():
    owners = {}
    for part in os.listdir(SRC):
        inc = os.path.join(SRC, part, "include", "microlm")
        if os.path.isdir(inc):
            for h in os.listdir(inc):
                if h in owners:
                    raise SystemExit(f"check_parts: microlm/{h} is public in both {owners[h]} and {part}")
                owners[h] = part
    return owners


def part_files(part):
    for dirpath, _, files in os.walk(os.path.join(SRC, part)):
        for f in files:
            if f.endswith((".cpp", ".h", ".inc")):
                yield os.path.join(dirpath, f)


def find_cycle(deps):
    state = {}

    def visit(p, path):
        state[p] = 1
        for q in sorted(deps.get(p, ())):
            if state.get(q) == 1:
                return path + [p, q]
            if q not in state:
                c = visit(q, path + [p])
                if c:
                    return c
        state[p] = 2
        return None

    for p in sorted(deps):
        if p not in state:
            c = visit(p, [])
            if c:
                return c
    return None


# (what, a regex for a definition, the one folder allowed to hold it)
ONE_OWNER = [
    ("mmap wrapper", r"::mmap\(", "src/base/"),
    ("CRC-32 table", r"0xEDB88320", "src/base/"),
    ("timing helper", r"\b(?:double|auto)\s+(?:ms_since|ms_between|seconds_since)\s*\(", "src/base/"),
    ("sentence rule", r"\bbool\s+ends_sentence\s*\(", "src/text/"),
    ("line-break rule", r"\bbool\s+is_line_break\s*\(", "src/text/"),
    ("clause rule", r"\bbool\s+word_ends_clause\s*\(", "src/text/"),
    ("thread pool", r"\bclass\s+ThreadPool\b", "src/base/"),
]


def main():
    quiet = "--quiet" in sys.argv
    deps = declared_deps()
    owners = header_owners()
    parts = sorted(p for p in os.listdir(SRC) if os.path.isdir(os.path.join(SRC, p)))
    errors = []
    used = {p: set() for p in parts}
    for part in parts:
        if part not in deps and part not in TOP:
            errors.append(f"src/{part}/ is no microlm_part(...) in CMakeLists.txt")
        allowed = deps.get(part, set())
        for f in part_files(part):
            rel = os.path.relpath(f, ROOT)
            for n, line in enumerate(open(f, encoding="utf-8"), 1):
                m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                if not m:
                    continue
                inc = m.group(1)
                if inc.startswith("microlm/"):
                    owner = owners.get(inc[len("microlm/"):])
                    if owner is None:
                        errors.append(f"{rel}:{n}: {inc} is no part's public header")
                    elif owner != part:
                        used[part].add(owner)
                        if part != "cli" and owner not in allowed:
                            errors.append(f"{rel}:{n}: {part} includes {inc} ({owner}) but does not declare {owner} in DEPS")
                elif "/" in inc:
                    errors.append(f"{rel}:{n}: \"{inc}\" reaches into another folder's private header")
    for part, ds in deps.items():
        for d in ds:
            if d in TOP:
                errors.append(f"{part} depends on the program {d}")
    cycle = find_cycle(deps)
    if cycle:
        errors.append("cycle between parts: " + " -> ".join(cycle))
    for what, pattern, home in ONE_OWNER:
        for part in parts:
            for f in part_files(part):
                rel = os.path.relpath(f, ROOT)
                if rel.startswith(home):
                    continue
                for n, line in enumerate(open(f, encoding="utf-8"), 1):
                    if re.search(pattern, line):
                        errors.append(f"{rel}:{n}: a second {what} (its one owner is {home})")

    if not quiet:
        print("parts and the parts they include (declared arrows in CMakeLists.txt):")
        for part in parts:
            print(f"  {part:10s} -> {', '.join(sorted(used[part])) or '(leaf)'}")
    for e in errors:
        print("check_parts: " + e, file=sys.stderr)
    if errors:
        print(f"check_parts: {len(errors)} violation(s)", file=sys.stderr)
        return 1
    print("check_parts: ok (no undeclared arrow, no private include, no cycle, no second owner)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
