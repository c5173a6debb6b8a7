#!/usr/bin/env python3
"""Embeds docs/openapi.json in rpoold: writes a C++ source defining api::openapi_json().

    embed_openapi.py INPUT.json OUTPUT.cpp

Run by meson at build time, so the document a node serves is the one in the tree. The build fails
here, naming the reason, if the file is not JSON or not an OpenAPI 3.1 document. The JSON is
written minified (the answer is smaller, and the source's formatting is nobody's concern at run time).
"""

import json
import sys

DELIMITER = "rpool_openapi"


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    source, output = sys.argv[1], sys.argv[2]
    try:
        with open(source, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        print(f"{source}: not a readable JSON document: {e}", file=sys.stderr)
        return 1
    if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3.1."):
        print(f"{source}: not an OpenAPI 3.1 document (no \"openapi\": \"3.1.x\")", file=sys.stderr)
        return 1
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    if f'){DELIMITER}"' in text:
        print(f"{source}: contains the raw string delimiter {DELIMITER!r}", file=sys.stderr)
        return 1
    with open(output, "w", encoding="utf-8") as f:
        f.write("// Generated at build time by src/api/embed_openapi.py from docs/openapi.json. Do not edit.\n")
        f.write('#include "api/openapi.h"\n\n')
        f.write("namespace rpool::api {\n\n")
        f.write("std::string_view openapi_json() {\n")
        f.write(f'  static constexpr std::string_view document = R"{DELIMITER}({text}){DELIMITER}";\n')
        f.write("  return document;\n}\n\n}  // namespace rpool::api\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
