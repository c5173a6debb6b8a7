#!/usr/bin/env python3
"""Checks docs/openapi.json itself, and that openapi_check catches answers that do not fit it.

    openapi_selftest.py [--doc docs/openapi.json] [--api-source src/api/api.cpp]

1. The document: JSON, OpenAPI 3.1, every $ref resolves, every schema is a valid JSON Schema
   2020-12 (Draft202012Validator.check_schema), every operation has a 200 and unique operationId,
   every error answer's schema is the Error object, every admin operation names the security scheme.
2. The routes: every path that api::parse_target routes (read from its source) is documented, and
   every documented path is one it routes, so the document neither misses nor invents a route.
3. The checker: answers that fit pass; an answer with a property the schema forbids, a missing
   required property, a wrong error code, a missing Retry-After, an undocumented status or route
   fail; and after dropping a property from a schema or a route from the document, answers that
   fit the real document fail.
Exit 0 if all holds; otherwise one line per fault and exit 1.
"""

import argparse
import copy
import json
import os
import re
import sys

import jsonschema

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import openapi_check  # noqa: E402
from openapi_check import Checker, resolve_pointer  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
ADMIN_PATHS = {"/v1/items/{item_id}", "/v1/cluster/members", "/v1/cluster/members/{id}", "/v1/cluster/leader",
               "/v1/snapshot", "/v1/pools/{pool_id}/items/{item_id}"}
# Paths where only some methods are admin: reading a pool is not, creating or deleting one is.
ADMIN_OPERATIONS = {("/v1/pools/{pool_id}", "put"), ("/v1/pools/{pool_id}", "delete")}
faults = []


def fault(message):
    faults.append(message)
    print(f"FAIL {message}", flush=True)


def walk(node, where="#"):
    """Yields (pointer, object) for every dict in the document."""
    if isinstance(node, dict):
        yield where, node
        for k, v in node.items():
            yield from walk(v, f"{where}/{k.replace('~', '~0').replace('/', '~1')}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{where}/{i}")


def schemas_of(doc):
    """Every JSON Schema in the document, by pointer: components, media types, parameters, headers."""
    for name, schema in doc["components"].get("schemas", {}).items():
        yield f"#/components/schemas/{name}", schema
    for where, obj in walk(doc):
        if "/components/schemas" in where:
            continue
        if "schema" in obj and isinstance(obj["schema"], dict) and ("in" in obj or "/content/" in where
                                                                    or "/headers/" in where):
            yield where + "/schema", obj["schema"]


def check_document(doc):
    if not str(doc.get("openapi", "")).startswith("3.1."):
        fault(f"openapi is {doc.get('openapi')!r}, not 3.1.x")
    for key in ("info", "paths", "components"):
        if key not in doc:
            fault(f"no {key}")
    for where, obj in walk(doc):
        ref = obj.get("$ref")
        if isinstance(ref, str):
            try:
                resolve_pointer(doc, ref)
            except (KeyError, ValueError, IndexError) as e:
                fault(f"{where}: $ref does not resolve: {e}")
    count = 0
    for where, schema in schemas_of(doc):
        count += 1
        try:
            jsonschema.validators.Draft202012Validator.check_schema(schema)
        except jsonschema.exceptions.SchemaError as e:
            fault(f"{where}: not a valid JSON Schema 2020-12: {e.message}")
    if count < 20:
        fault(f"only {count} schemas found: the walk is broken")
    checker = Checker(doc)
    error_schema = doc["components"]["schemas"].get("Error", {})
    if error_schema.get("additionalProperties") is not False or set(error_schema.get("required", [])) != {"error", "message"}:
        fault("components/schemas/Error is not the strict {error, message} object")
    ids = set()
    for path, item in doc["paths"].items():
        for method in openapi_check.METHODS:
            op = item.get(method)
            if op is None:
                continue
            what = f"{method.upper()} {path}"
            if op.get("operationId") in ids or not op.get("operationId"):
                fault(f"{what}: operationId missing or not unique")
            ids.add(op.get("operationId"))
            responses = op.get("responses", {})
            if "200" not in responses:
                fault(f"{what}: no 200 answer")
            for status, response in responses.items():
                response = checker.deref(response)
                if not status.startswith(("4", "5")):
                    continue
                for mt, media in response.get("content", {}).items():
                    text = json.dumps(media.get("schema"))
                    if mt != "application/json" or "#/components/schemas/Error" not in text:
                        fault(f"{what} {status}: the error answer is not the Error object")
                if status == "503" and path != "/readyz" and not checker.deref(
                        response.get("headers", {}).get("Retry-After", {})).get("required"):
                    fault(f"{what} 503: Retry-After is not required")
            admin = path in ADMIN_PATHS or (path, method) in ADMIN_OPERATIONS
            if admin != bool(op.get("security")):
                fault(f"{what}: security is {op.get('security')!r}, but the route is {'' if admin else 'not '}admin")
            if admin and "401" not in responses:
                fault(f"{what}: an admin operation without 401")
    for scheme in {k for op_sec in [op.get("security", []) for item in doc["paths"].values()
                                    for m, op in item.items() if m in openapi_check.METHODS]
                   for req in op_sec for k in req}:
        if scheme not in doc["components"].get("securitySchemes", {}):
            fault(f"security scheme {scheme} is not defined")


def routed_paths(api_source):
    """The paths api::parse_target routes: its literal paths and, for a prefix, the prefix plus a
    parameter ({item_id} or {id}, as the document names them)."""
    with open(api_source, encoding="utf-8") as f:
        text = f.read()
    body = text[text.index("Target parse_target("):]
    body = body[:body.index("\n}\n")]
    literal = set(re.findall(r'path == "([^"]+)"', body))
    prefixes = dict(re.findall(r'constexpr std::string_view (\w+) = "([^"]+)";', body))
    used = set(re.findall(r"path\.starts_with\((\w+)\)", body))
    return literal, {prefixes[p] for p in used}


def check_routes(doc, api_source):
    literal, prefixes = routed_paths(api_source)
    if len(literal) < 5 or len(prefixes) < 2:
        fault(f"could not read parse_target's routes from {api_source}: {literal} {prefixes}")
    documented = set(doc["paths"])
    for p in sorted(literal - documented):
        fault(f"parse_target routes {p}, the document lacks it")
    for prefix in sorted(prefixes):
        if not any(d.startswith(prefix) and d[len(prefix):].startswith("{") for d in documented):
            fault(f"parse_target routes {prefix}<id>, the document lacks it")
    for d in sorted(documented):
        if d not in literal and not any(d.startswith(p) and d[len(p):].startswith("{") for p in prefixes):
            fault(f"the document has {d}, parse_target does not route it")


J = {"content-type": "application/json"}
GOOD = [
    ("POST", "/v1/draw", 200, J,
     {"draws": [{"request_id": 1, "item_id": "gold"}, {"request_id": 2, "item_id": None, "error": "pool_empty"}],
      "index": 7}),
    ("GET", "/v1/pool?consistency=stale", 200, J,
     {"items": [{"item_id": "mud", "quantity": -1, "probability": 70}], "last_request_id": 2, "index": 7,
      "digest": "ab" * 32}),
    ("GET", "/v1/cluster", 200, J,
     {"node_id": 1, "role": "leader", "term": 2, "leader_id": 1, "commit_index": 7, "applied_index": 7,
      "members": [{"id": 1, "raft": "127.0.0.1:7001", "http": "127.0.0.1:8001", "voter": True}]}),
    ("POST", "/v1/draw", 503, {**J, "retry-after": "1"}, {"error": "no_leader", "message": "No leader."}),
    ("DELETE", "/v1/items/gold", 404, J, {"error": "not_found", "message": "No item."}),
    ("GET", "/v1/nope", 404, J, {"error": "not_found", "message": "No such path."}),
    ("GET", "/v1/draw", 405, {**J, "allow": "POST"}, {"error": "method_not_allowed", "message": "POST only."}),
    ("GET", "/readyz", 503, J, {"error": "not_ready", "message": "No leader is known."}),
    ("GET", "/metrics", 200, {"content-type": "text/plain; version=0.0.4; charset=utf-8"}, "rpool_term 2\n"),
]
BAD = [
    ("a property the schema forbids", "POST", "/v1/draw", 200, J,
     {"draws": [{"request_id": 1, "item_id": "gold"}], "index": 7, "extra": 1}),
    ("a missing required property", "GET", "/v1/pool", 200, J, {"items": [], "last_request_id": 0, "index": 7}),
    ("a digest that is not hex", "GET", "/v1/pool", 200, J,
     {"items": [], "last_request_id": 0, "index": 7, "digest": "xyz"}),
    ("an error code its status does not have", "POST", "/v1/draw", 422, J, {"error": "bad_request", "message": "m"}),
    ("an error without its message", "POST", "/v1/draw", 400, J, {"error": "bad_request"}),
    ("a 503 without Retry-After", "POST", "/v1/draw", 503, J, {"error": "no_leader", "message": "m"}),
    ("an undocumented status", "GET", "/healthz", 204, J, {"status": "ok"}),
    ("an undocumented route", "GET", "/v1/undocumented", 200, J, {}),
    ("a wrong Content-Type", "GET", "/healthz", 200, {"content-type": "text/html"}, "<p>ok</p>"),
    ("a body that is not JSON", "GET", "/healthz", 200, J, "ok"),
]


def body_bytes(body):
    return body.encode() if isinstance(body, str) else json.dumps(body).encode()


def check_checker(doc):
    checker = Checker(doc)
    for method, target, status, headers, body in GOOD:
        problems = checker.check(method, target, status, headers, body_bytes(body))
        if problems:
            fault(f"a good answer to {method} {target} ({status}) was refused: {problems}")
    for what, method, target, status, headers, body in BAD:
        if not checker.check(method, target, status, headers, body_bytes(body)):
            fault(f"{what} ({method} {target} {status}) passed the check")
    # A document that is wrong makes right answers fail: a property dropped from a schema that
    # forbids unknown properties, and a route dropped.
    broken = copy.deepcopy(doc)
    pool = broken["components"]["schemas"].get("Pool", {})
    pool.get("properties", {}).pop("digest", None)
    pool["required"] = [r for r in pool.get("required", []) if r != "digest"]
    method, target, status, headers, body = GOOD[1]
    if not Checker(broken).check(method, target, status, headers, body_bytes(body)):
        fault("with digest dropped from the Pool schema, a pool answer with a digest still passed")
    broken = copy.deepcopy(doc)
    broken["paths"].pop("/v1/cluster", None)
    method, target, status, headers, body = GOOD[2]
    if not Checker(broken).check(method, target, status, headers, body_bytes(body)):
        fault("with /v1/cluster dropped from the document, a 200 from it still passed")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "openapi.json"))
    ap.add_argument("--api-source", default=os.path.join(ROOT, "src", "api", "api.cpp"))
    args = ap.parse_args()
    try:
        with open(args.doc, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        print(f"FAIL {args.doc}: not a JSON document: {e}")
        return 1
    check_document(doc)
    if not faults:
        check_routes(doc, args.api_source)
        check_checker(doc)
    print(f"openapi-selftest: {'OK' if not faults else f'{len(faults)} faults'} ({args.doc})")
    return 1 if faults else 0


if __name__ == "__main__":
    sys.exit(main())
