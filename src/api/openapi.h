// The OpenAPI 3.1 document of the HTTP API (docs/openapi.json), compiled into the binary at build
// time, so that GET /v1/openapi.json serves exactly the document of the tree the node was built
// from.
#pragma once

#include <string_view>

namespace rpool::api {

// The document as minified JSON (UTF-8). Valid for the life of the program.
std::string_view openapi_json();

}  // namespace rpool::api
