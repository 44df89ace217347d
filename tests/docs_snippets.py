#!/usr/bin/env python3
"""Keep the code blocks of docs/*.md identical to the compiled examples.

A block is introduced by `<!-- snippet: examples/NAME.cpp#TAG -->` on the line
before a ```cpp fence; its text is the region between the two `// [TAG]`
lines of that example (dedented). `--write` rewrites the blocks, the default
(`--check`) fails if any differs.
"""
import pathlib
import re
import sys
import textwrap

root = pathlib.Path(__file__).resolve().parent.parent
marker = re.compile(r"<!-- snippet: (examples/[\w.]+)#(\w+) -->\n```cpp\n(.*?)```", re.S)


def region(path, tag):
    lines = (root / path).read_text().splitlines(keepends=True)
    tagged = [i for i, line in enumerate(lines) if line.strip() == f"// [{tag}]"]
    if len(tagged) != 2:
        raise SystemExit(f"{path}: expected two '// [{tag}]' lines, found {len(tagged)}")
    return textwrap.dedent("".join(lines[tagged[0] + 1 : tagged[1]]))


def main():
    write = "--write" in sys.argv
    stale = []
    for doc in sorted((root / "docs").glob("*.md")):
        text = doc.read_text()

        def replace(m):
            want = region(m.group(1), m.group(2))
            if m.group(3) != want:
                stale.append(f"{doc.relative_to(root)}: {m.group(1)}#{m.group(2)}")
            return f"<!-- snippet: {m.group(1)}#{m.group(2)} -->\n```cpp\n{want}```"

        new = marker.sub(replace, text)
        if write and new != text:
            doc.write_text(new)
    if stale and not write:
        print("docs out of date with the examples (run tests/docs_snippets.py --write):")
        print("\n".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
