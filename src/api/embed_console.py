#!/usr/bin/env python3
"""Embeds the web console in rpoold: writes a C++ source defining api::console_asset().

    embed_console.py OUTPUT.cpp FILE...

Run by meson at build time. Each FILE is served under its base name (/console/NAME; index.html
also at /). The build fails here, naming the file, if one has an extension we have no content type
for, is not UTF-8, or asks for something from the network (the console must work offline).
"""

import os
import re
import sys

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The console loads nothing from another origin: no http(s) URL in src/href/url()/import/fetch.
REMOTE = re.compile(r"""(src|href)\s*=\s*["']?\s*(https?:)?//|url\(\s*["']?(https?:)?//|import\s+["']https?:""")


def cpp_string(text):
    # One raw string literal per chunk: compilers cap a single literal's length.
    chunks = [text[i:i + 16000] for i in range(0, len(text), 16000)] or [""]
    out = []
    for chunk in chunks:
        if ')rpool_console"' in chunk:
            raise ValueError("contains the raw string delimiter")
        out.append(f'R"rpool_console({chunk})rpool_console"')
    return "\n      ".join(out)


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    output, sources = sys.argv[1], sys.argv[2:]
    entries = []
    for source in sources:
        name = os.path.basename(source)
        ext = os.path.splitext(name)[1]
        if ext not in CONTENT_TYPES:
            print(f"{source}: no content type for {ext!r}", file=sys.stderr)
            return 1
        try:
            with open(source, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            print(f"{source}: not a readable UTF-8 file: {e}", file=sys.stderr)
            return 1
        if REMOTE.search(text):
            print(f"{source}: loads something from the network: {REMOTE.search(text).group(0)!r}",
                  file=sys.stderr)
            return 1
        try:
            entries.append((name, CONTENT_TYPES[ext], cpp_string(text)))
        except ValueError as e:
            print(f"{source}: {e}", file=sys.stderr)
            return 1
    with open(output, "w", encoding="utf-8") as f:
        f.write("// Generated at build time by src/api/embed_console.py from src/console/. Do not edit.\n")
        f.write('#include "api/console.h"\n\n#include <array>\n#include <utility>\n\n')
        f.write("namespace rpool::api {\n\n")
        f.write("const ConsoleAsset* console_asset(std::string_view name) {\n")
        f.write(f"  static const std::array<std::pair<std::string_view, ConsoleAsset>, {len(entries)}> assets = {{{{\n")
        for name, ctype, literal in entries:
            f.write(f'    {{"{name}", ConsoleAsset{{"{ctype}",\n      {literal}}}}},\n')
        f.write("  }};\n")
        f.write("  for (const auto& [n, asset] : assets) {\n    if (n == name) return &asset;\n  }\n")
        f.write("  return nullptr;\n}\n\n}  // namespace rpool::api\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
