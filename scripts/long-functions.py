#!/usr/bin/env python3
"""Counts the non-test Rust functions longer than 60 lines in a checkout.

    scripts/long-functions.py [DIR] [N]   # DIR defaults to the checkout; lists the N longest

A function's length is counted from its `fn` line to the brace that closes it. Test code is
left out: `tests/` and `testkit/`, any `*/tests/` folder, `tests.rs` files, and whatever
follows a file's `#[cfg(test)]`.
"""
import re
import subprocess
import sys

FN = re.compile(r"\s*(pub(\([a-z]+\))?\s+)?(async\s+)?(const\s+)?fn\s+\w+")


def long_functions(root):
    files = subprocess.run(
        ["git", "ls-files", "*.rs"], capture_output=True, text=True, cwd=root
    ).stdout.split()
    files = [
        f
        for f in files
        if not f.startswith(("tests/", "testkit/"))
        and "/tests/" not in f
        and not f.endswith("/tests.rs")
    ]
    found = []
    for f in files:
        lines = open(f"{root}/{f}").read().split("\n")
        end = next((i for i, l in enumerate(lines) if l.strip() == "#[cfg(test)]"), len(lines))
        i = 0
        while i < end:
            if not FN.match(lines[i]):
                i += 1
                continue
            depth, opened, j = 0, False, i
            while j < len(lines):
                depth += lines[j].count("{") - lines[j].count("}")
                opened = opened or "{" in lines[j]
                if (opened and depth <= 0) or (not opened and lines[j].rstrip().endswith(";")):
                    break
                j += 1
            if opened and j - i + 1 > 60:
                found.append((j - i + 1, f, lines[i].strip()[:70]))
            i = j + 1 if opened else i + 1
    return sorted(found, reverse=True)


if __name__ == "__main__":
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    shown = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    found = long_functions(root)
    print(len(found))
    for n, f, line in found[:shown]:
        print(n, f, line)
