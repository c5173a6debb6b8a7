// The web console's files (src/console/), compiled into the binary at build time by
// embed_console.py, so that a node serves its console with no file and no network at run time.
#pragma once

#include <string_view>

namespace rpool::api {

struct ConsoleAsset {
  std::string_view content_type;  // e.g. "text/html; charset=utf-8"
  std::string_view body;
};

// The asset named `name` ("index.html", "console.js", ...), or nullptr if there is none. The
// pointer and the views stay valid for the life of the program.
const ConsoleAsset* console_asset(std::string_view name);

}  // namespace rpool::api
