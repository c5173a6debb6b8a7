"""A strict validator of the Prometheus text exposition format 0.0.4, for GET /metrics.

    families = prom.parse(text)     # raises ValueError("line N: why") on the first violation
    families["rpool_term"]["samples"]   # [("rpool_term", {}, 7.0)]
    prom.cross_check(text)          # also run Prometheus' own Python parser, when installed

The rules are those of https://prometheus.io/docs/instrumenting/exposition_formats/ (text format
0.0.4), read strictly where the text leaves room:

- Lines end in "\\n", the last one too. Blank lines and leading blanks (space, tab) are allowed;
  a carriage return is not.
- "# HELP name docstring" and "# TYPE name counter|gauge|histogram|summary|untyped"; any other
  line starting with "#" is a comment. The docstring escapes only "\\\\" and "\\n".
- A sample is `name{label="value",...} value [timestamp]`: a metric name [a-zA-Z_:][a-zA-Z0-9_:]*,
  label names [a-zA-Z_][a-zA-Z0-9_]* (not "__name__", not twice in one sample), label values that
  escape only "\\\\", "\\"" and "\\n", an optional trailing comma in the braces; a value that is a
  decimal float or exactly "NaN", "+Inf" or "-Inf" (stricter than Go's ParseFloat, which also
  takes "inf" or hex floats); an optional integer timestamp in milliseconds.
- A metric family is one TYPE/HELP name and its samples; a histogram's family x holds x_bucket,
  x_sum and x_count, a summary's holds x, x_sum and x_count. All lines of a family form one group:
  HELP and TYPE at most once each and before the family's first sample; once another family has
  begun, the family may not come back.
- No series (sample name plus label set) appears twice.
- A counter's name ends in "_total" (histogram and summary parts are not counters here).
- Each histogram series (its labels without "le") has _bucket lines with an "le" label, le strictly
  ascending, the last one "+Inf", counts non-decreasing, then an _sum and an _count equal to the
  +Inf bucket. A summary's bare samples carry a "quantile" label.
"""

import json
import math
import os
import re
import subprocess

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
TIMESTAMP = re.compile(r"-?[0-9]+")
BLANKS = re.compile(r"[ \t]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
SPECIAL_VALUES = {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf}

# The sample names a family of each type may hold, as suffixes of the family name.
SUFFIXES = {
    "counter": ("",),
    "gauge": ("",),
    "untyped": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def _fail(n, why):
    raise ValueError(f"line {n}: {why}")


def parse_value(token):
    """The float of a sample value or an "le" bound, or None if the text format does not allow it."""
    if token in SPECIAL_VALUES:
        return SPECIAL_VALUES[token]
    if DECIMAL.fullmatch(token):
        return float(token)
    return None


def _format_series(name, labels):
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}}" if labels else name


class _Family:
    def __init__(self, name, first_line):
        self.name = name
        self.first_line = first_line
        self.type = None        # from the TYPE line; None means untyped
        self.type_line = None
        self.help = None        # from the HELP line
        self.help_line = None
        self.samples = []       # (sample name, labels, value, line)

    def result(self):
        return {"type": self.type or "untyped", "help": self.help,
                "samples": [(s, labels, v) for s, labels, v, _ in self.samples]}


class _Parser:
    def __init__(self):
        self.families = {}      # name -> _Family, in order of appearance
        self.current = None     # the family whose group is open
        self.series = {}        # (sample name, frozenset(labels)) -> line

    # --- lines -------------------------------------------------------------------------------

    def line(self, n, text):
        if "\r" in text:
            _fail(n, "carriage return in a line (lines end in \\n alone)")
        i = BLANKS.match(text).end()
        if i == len(text):
            return  # blank line
        if text[i] == "#":
            self.comment(n, text, i + 1)
        else:
            self.sample(n, text, i)

    def comment(self, n, text, i):
        i = BLANKS.match(text, i).end()
        keyword = re.compile(r"[^ \t]*").match(text, i)
        if keyword.group() not in ("HELP", "TYPE"):
            return  # an ordinary comment
        i = keyword.end()
        after = BLANKS.match(text, i).end()
        if after == i:
            _fail(n, f"# {keyword.group()} needs a metric name")
        name = METRIC_NAME.match(text, after)
        end = name.end() if name else after
        if not name or (end < len(text) and text[end] not in " \t"):
            word = (text[after:].split() or [""])[0]
            _fail(n, f"# {keyword.group()}: bad metric name {word!r}")
        name = name.group()
        rest_at = BLANKS.match(text, end).end()
        family = self.enter(n, name)
        if keyword.group() == "HELP":
            if family.help_line is not None:
                _fail(n, f"second HELP line for {name} (the first is line {family.help_line})")
            if family.samples:
                _fail(n, f"HELP for {name} after its first sample (line {family.samples[0][3]})")
            family.help = self.unescape_help(n, text[rest_at:])
            family.help_line = n
        else:
            typ = text[rest_at:].rstrip(" \t")
            if typ not in TYPES:
                _fail(n, f"# TYPE {name}: unknown type {typ!r} (expected one of {', '.join(TYPES)})")
            if family.type_line is not None:
                _fail(n, f"second TYPE line for {name} (the first is line {family.type_line})")
            if family.samples:
                _fail(n, f"TYPE for {name} after its first sample (line {family.samples[0][3]})")
            if typ == "counter" and not name.endswith("_total"):
                _fail(n, f"counter {name}: a counter's name ends in _total")
            family.type = typ
            family.type_line = n

    def sample(self, n, text, i):
        name = METRIC_NAME.match(text, i)
        if not name:
            _fail(n, f"bad metric name at column {i + 1}: {text[i:]!r}")
        sample_name = name.group()
        i = BLANKS.match(text, name.end()).end()
        labels = {}
        if i < len(text) and text[i] == "{":
            labels, i = self.labels(n, text, i + 1)
        rest = text[i:]
        tokens = [t for t in re.split(r"[ \t]+", rest) if t]
        if not tokens:
            _fail(n, f"{sample_name} has no value")
        if text[i - 1] not in " \t}":
            _fail(n, f"expected a blank and a value after {sample_name}, got {rest!r}")
        if len(tokens) > 2:
            _fail(n, f"unexpected text after the value and timestamp: {' '.join(tokens[2:])!r}")
        value = parse_value(tokens[0])
        if value is None:
            _fail(n, f"bad value {tokens[0]!r} (a float, NaN, +Inf or -Inf)")
        if len(tokens) == 2 and not TIMESTAMP.fullmatch(tokens[1]):
            _fail(n, f"bad timestamp {tokens[1]!r} (integer milliseconds)")

        family = self.enter(n, self.family_of(sample_name))
        typ = family.type or "untyped"
        if sample_name[len(family.name):] not in SUFFIXES[typ]:
            _fail(n, f"{typ} {family.name} cannot hold a sample named {sample_name}")
        key = (sample_name, frozenset(labels.items()))
        if key in self.series:
            _fail(n, f"duplicate series {_format_series(sample_name, labels)} (first at line {self.series[key]})")
        self.series[key] = n
        family.samples.append((sample_name, labels, value, n))

    def labels(self, n, text, i):
        """Reads `l="v",...}` from text[i:]; returns the labels and the index after the brace."""
        labels = {}
        while True:
            i = BLANKS.match(text, i).end()
            if i < len(text) and text[i] == "}":
                return labels, i + 1
            name = LABEL_NAME.match(text, i)
            if not name:
                _fail(n, f"bad label name at column {i + 1}: {text[i:]!r}")
            label = name.group()
            if label == "__name__":
                _fail(n, "label name __name__ is reserved")
            if label in labels:
                _fail(n, f"label {label} appears twice")
            i = BLANKS.match(text, name.end()).end()
            if text[i:i + 1] != "=":
                _fail(n, f"expected = after label {label}")
            i = BLANKS.match(text, i + 1).end()
            if text[i:i + 1] != '"':
                _fail(n, f"expected a double-quoted value for label {label}")
            value, i = self.label_value(n, text, i + 1, label)
            labels[label] = value
            i = BLANKS.match(text, i).end()
            if text[i:i + 1] == ",":
                i += 1
            elif text[i:i + 1] != "}":
                _fail(n, f"expected , or }} after the value of label {label}")

    def label_value(self, n, text, i, label):
        out = []
        while i < len(text):
            c = text[i]
            if c == '"':
                return "".join(out), i + 1
            if c == "\\":
                escaped = text[i + 1:i + 2]
                if escaped not in ("\\", '"', "n"):
                    _fail(n, f"invalid escape \\{escaped} in the value of label {label}")
                out.append("\n" if escaped == "n" else escaped)
                i += 2
            else:
                out.append(c)
                i += 1
        _fail(n, f"unterminated value of label {label}")

    @staticmethod
    def unescape_help(n, text):
        out = []
        i = 0
        while i < len(text):
            if text[i] == "\\":
                escaped = text[i + 1:i + 2]
                if escaped not in ("\\", "n"):
                    _fail(n, f"invalid escape \\{escaped} in HELP text")
                out.append("\n" if escaped == "n" else escaped)
                i += 2
            else:
                out.append(text[i])
                i += 1
        return "".join(out)

    # --- families ----------------------------------------------------------------------------

    def family_of(self, sample_name):
        """The family a sample belongs to: x for x_bucket/x_sum/x_count when x is a histogram or
        summary, else the sample's own name."""
        for suffix in ("_bucket", "_sum", "_count"):
            if sample_name.endswith(suffix):
                base = self.families.get(sample_name[:-len(suffix)])
                if base and base.type and suffix in SUFFIXES[base.type] and base.type in ("histogram", "summary"):
                    return base.name
        return sample_name

    def enter(self, n, name):
        """The family of a line at line n; opens it, closing the one before."""
        if self.current == name:
            return self.families[name]
        if name in self.families:
            family = self.families[name]
            last = max([family.first_line] + [s[3] for s in family.samples]
                       + [family.help_line or 0, family.type_line or 0])
            _fail(n, f"{name} continues after other families began (its lines must be together; "
                     f"it was last at line {last})")
        if self.current is not None:
            self.close(self.families[self.current])
        self.families[name] = _Family(name, n)
        self.current = name
        return self.families[name]

    def close(self, family):
        if family.type == "histogram":
            self.check_histogram(family)
        elif family.type == "summary":
            self.check_summary(family)

    def check_histogram(self, family):
        name = family.name
        series = {}  # labels without le -> {"buckets": [(le, count, line)], "sum": line, "count": (value, line)}
        for sample_name, labels, value, n in family.samples:
            if sample_name == name + "_bucket":
                if "le" not in labels:
                    _fail(n, f"{sample_name} has no le label")
                le = parse_value(labels["le"])
                if le is None or math.isnan(le):
                    _fail(n, f"{sample_name}: le={labels['le']!r} is not a number")
                rest = {k: v for k, v in labels.items() if k != "le"}
            else:
                if "le" in labels:
                    _fail(n, f"{sample_name} has an le label (only _bucket lines do)")
                rest = labels
            s = series.setdefault(frozenset(rest.items()), {"labels": rest, "buckets": [], "sum": None,
                                                            "count": None, "last": n})
            s["last"] = n
            if sample_name == name + "_bucket":
                buckets = s["buckets"]
                if buckets and le <= buckets[-1][0]:
                    _fail(n, f"{sample_name}: le={labels['le']} after le={buckets[-1][3]} "
                             "(le must be strictly ascending)")
                if buckets and value < buckets[-1][1]:
                    _fail(n, f"{sample_name}{{le={labels['le']}}} = {value} is below the previous bucket "
                             f"({buckets[-1][1]}): buckets are cumulative")
                buckets.append((le, value, n, labels["le"]))
            elif sample_name == name + "_sum":
                s["sum"] = n
            else:
                s["count"] = (value, n)
        for s in series.values():
            where = _format_series(name, s["labels"])
            if not s["buckets"]:
                _fail(s["last"], f"histogram {where} has no _bucket lines")
            le, top, top_line, _ = s["buckets"][-1]
            if le != math.inf:
                _fail(top_line, f"histogram {where}: the last bucket is le={s['buckets'][-1][3]}, not +Inf")
            if s["count"] is None:
                _fail(s["last"], f"histogram {where} has no {name}_count")
            count, count_line = s["count"]
            if count != top:
                _fail(count_line, f"histogram {where}: _count {count} differs from the +Inf bucket {top} "
                                  f"(line {top_line})")
            if s["sum"] is None:
                _fail(s["last"], f"histogram {where} has no {name}_sum")

    def check_summary(self, family):
        for sample_name, labels, _, n in family.samples:
            if sample_name == family.name:
                if "quantile" not in labels:
                    _fail(n, f"summary sample {sample_name} has no quantile label")
                q = parse_value(labels["quantile"])
                if q is None or not 0 <= q <= 1:
                    _fail(n, f"summary {sample_name}: quantile={labels['quantile']!r} is not in [0, 1]")
            elif "quantile" in labels:
                _fail(n, f"{sample_name} has a quantile label (only the bare samples do)")


def parse(text):
    """Validates `text` and returns its families:
    {name: {"type": "counter"|..., "help": str or None, "samples": [(sample name, labels, value)]}},
    in the order they appear. Raises ValueError("line N: why") on the first violation."""
    if not isinstance(text, str):
        raise TypeError("parse() takes the text as str")
    lines = text.split("\n")
    if text and not text.endswith("\n"):
        raise ValueError(f"line {len(lines)}: the text does not end with a newline")
    parser = _Parser()
    for n, line in enumerate(lines[:-1], start=1):
        parser.line(n, line)
    if parser.current is not None:
        parser.close(parser.families[parser.current])
    return {name: family.result() for name, family in parser.families.items()}


# Run by Debian's python3 (python3-prometheus-client): prints the samples as JSON.
_REFERENCE = r"""
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"""

REFERENCE_PYTHON = "/usr/bin/python3"


def reference_available(python=REFERENCE_PYTHON):
    """True if `python` can import prometheus_client.parser."""
    if not os.access(python, os.X_OK):
        return False
    probe = subprocess.run([python, "-c", "import prometheus_client.parser"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    return probe.returncode == 0


def cross_check(text, python=REFERENCE_PYTHON):
    """Parses `text` with Prometheus' own Python parser (prometheus_client, run by Debian's
    python3 in a subprocess) and compares its samples with parse()'s.

    Returns True when both agree; False when that parser is not installed (the caller says so);
    raises ValueError when it fails on the text or reads other samples. prometheus_client is laxer
    than parse() (its docstring says so), so call this on text that parse() accepts."""
    if not reference_available(python):
        return False
    run = subprocess.run([python, "-c", _REFERENCE], input=text, capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        why = (run.stderr.strip().splitlines() or ["no message"])[-1]
        raise ValueError(f"prometheus_client rejects the text: {why}")
    theirs = [(name, labels, value) for name, labels, value in json.loads(run.stdout)]
    ours = [sample for family in parse(text).values() for sample in family["samples"]]

    def same(a, b):
        return a[0] == b[0] and a[1] == b[1] and (a[2] == b[2] or (math.isnan(a[2]) and math.isnan(b[2])))

    if len(theirs) != len(ours):
        raise ValueError(f"prometheus_client reads {len(theirs)} samples, parse() {len(ours)}")
    for a, b in zip(ours, theirs):
        if not same(a, b):
            raise ValueError(f"prometheus_client reads {b}, parse() {a}")
    return True
