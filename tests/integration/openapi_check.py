"""Checks HTTP answers against docs/openapi.json: is the route documented, is the status documented
for it, does the Content-Type match, are the required headers there, does the JSON body validate
against the status's schema (JSON Schema 2020-12, python3-jsonschema).

    checker = Checker.load("docs/openapi.json")
    problems = checker.check("POST", "/v1/draw", 200, {"content-type": "application/json"}, b'{...}')

A path outside the document's `paths` is judged by its `x-rpool-fallback-responses` "unknown-path"
answers (404 not_found, and the HTTP server's own errors); a method its path does not take by the
"other-method" answers (405, 401 on admin paths). Anything else the node answers there means the
tests called a route the document does not have: reported as undocumented.

The integration client (cluster.Client.request) calls observe() for every answer; a suite calls
enable() first and finish() at the end, which fails the suite if any answer did not check out.
"""

import json
import os
import re
import threading

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
DEFAULT_DOCUMENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "openapi.json")


def resolve_pointer(doc, ref):
    """The object a local reference ("#/components/schemas/Item") names; KeyError if none."""
    if not ref.startswith("#"):
        raise KeyError(f"{ref}: only local references are used")
    node = doc
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(f"{ref}: no {part!r}")
    return node


def media_type(content_type):
    return content_type.split(";")[0].strip().lower()


class Checker:
    def __init__(self, doc):
        self.doc = doc
        self.components = doc.get("components", {})
        # (regex, template) per path, templates without parameters first so that a literal path wins.
        self.paths = []
        for template in sorted(doc["paths"], key=lambda t: ("{" in t, t)):
            pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
            self.paths.append((re.compile(pattern), template))
        self.validators = {}  # id(schema) -> (schema, validator)
        self.lock = threading.Lock()
        # Imported here: a suite that never enables the check (chaos) does not need python3-jsonschema.
        import jsonschema.validators
        self.validator_class = jsonschema.validators.Draft202012Validator

    @classmethod
    def load(cls, path=DEFAULT_DOCUMENT):
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))

    def deref(self, obj):
        while isinstance(obj, dict) and "$ref" in obj:
            obj = resolve_pointer(self.doc, obj["$ref"])
        return obj

    def route(self, path):
        """The path template `path` matches, or None."""
        for regex, template in self.paths:
            if regex.match(path):
                return template
        return None

    def responses_for(self, method, target):
        """(what, responses, undocumented) for a request: `what` names the operation for messages."""
        path = target.split("?", 1)[0]
        template = self.route(path)
        fallback = self.doc.get("x-rpool-fallback-responses", {})
        if template is None:
            return f"{method} {path} (no such path)", fallback.get("unknown-path", {}), True
        item = self.doc["paths"][template]
        operation = item.get(method.lower())
        if operation is None:
            return f"{method} {template} (no such method)", fallback.get("other-method", {}), True
        return f"{method} {template}", operation.get("responses", {}), False

    def validator(self, schema):
        key = id(schema)
        cached = self.validators.get(key)
        if cached is None:
            # The schema's references point into the document's components: validate under a root
            # that carries them.
            root = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                    "components": self.components, "allOf": [schema]}
            cached = (schema, self.validator_class(root))
            self.validators[key] = cached
        return cached[1]

    def check(self, method, target, status, headers, body):
        """The problems of one answer (an empty list if it checks out). `headers` has lower-case names."""
        what, responses, outside = self.responses_for(method, target)
        response = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX") or responses.get("default")
        if response is None:
            if outside:
                return [f"{what}: answered {status}: an undocumented route (or status)"]
            return [f"{what}: status {status} is not documented (documented: {', '.join(sorted(responses))})"]
        response = self.deref(response)
        problems = []
        for name, header in response.get("headers", {}).items():
            header = self.deref(header)
            if header.get("required") and name.lower() not in headers:
                problems.append(f"{what} {status}: no {name} header")
        content = response.get("content")
        if not content:
            return problems
        got = media_type(headers.get("content-type", ""))
        media = next((m for k, m in content.items() if media_type(k) == got), None)
        if media is None:
            problems.append(f"{what} {status}: Content-Type {got!r}, documented {sorted(content)}")
            return problems
        schema = media.get("schema")
        if schema is None or got != "application/json":
            return problems
        try:
            instance = json.loads(body)
        except ValueError as e:
            problems.append(f"{what} {status}: the body is not JSON ({e}): {body[:200]!r}")
            return problems
        with self.lock:  # a validator resolving references keeps state: one thread at a time
            errors = sorted(self.validator(schema).iter_errors(instance), key=lambda e: list(e.path))
        for e in errors[:3]:
            where = "/".join(str(p) for p in e.path) or "(the body)"
            problems.append(f"{what} {status}: at {where}: {e.message}")
        return problems


# --- the integration suites' hook ----------------------------------------------------------------

_state = {"checker": None, "answers": 0, "problems": {}, "lock": threading.Lock()}
PROBLEMS_KEPT_MAX = 50  # distinct problems kept; a systematic mismatch repeats on every answer


def enable(path=DEFAULT_DOCUMENT):
    """From now on observe() checks every answer against the document at `path`."""
    _state["checker"] = Checker.load(path)


def observe(method, target, response):
    """Called by the integration client with every answer; a no-op until enable()."""
    checker = _state["checker"]
    if checker is None:
        return
    problems = checker.check(method, target, response.status, response.headers, response.body)
    with _state["lock"]:
        _state["answers"] += 1
        for p in problems:
            kept = _state["problems"]
            if p in kept:
                kept[p] += 1
            elif len(kept) < PROBLEMS_KEPT_MAX:
                kept[p] = 1
            _state["problems_total"] = _state.get("problems_total", 0) + 1


def finish(name, out):
    """Prints what the check found; True if every answer observed checks out against the document."""
    if _state["checker"] is None:
        return True
    total = _state.get("problems_total", 0)
    print(f"{name}: {_state['answers']} answers checked against docs/openapi.json, {total} problems", file=out, flush=True)
    for p, times in _state["problems"].items():
        print(f"    openapi: {p}" + (f" ({times} times)" if times > 1 else ""), file=out, flush=True)
    return total == 0
