// The OpenAPI document compiled into the binary: it is the JSON of docs/openapi.json, OpenAPI 3.1.
// (tests/integration/openapi_selftest.py checks the document itself in depth.)
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "api/openapi.h"

using namespace rpool;

TEST_CASE("the embedded OpenAPI document is an OpenAPI 3.1 JSON object with the API's paths") {
  const auto doc = nlohmann::json::parse(api::openapi_json(), nullptr, /*allow_exceptions=*/false);
  REQUIRE(doc.is_object());
  REQUIRE(doc.contains("openapi"));
  CHECK(doc["openapi"].get<std::string>().starts_with("3.1."));
  REQUIRE(doc.contains("paths"));
  CHECK(doc["paths"].contains("/v1/draw"));
  CHECK(doc["paths"].contains("/v1/openapi.json"));
  CHECK(doc["components"]["securitySchemes"].contains("adminToken"));
}
