#!/usr/bin/env python3
"""Checks dashboards/container-startup.json against a live Prometheus and the
exporter it scrapes. Standard library only.

    check_dashboard.py DASHBOARD --prometheus URL --metrics URL [--contract FILE]

Static checks: valid JSON of schemaVersion >= 39 with the stable uid, the
datasource/instance/runtime variables, unique panel ids, gridPos rectangles
inside the 24-column grid that do not overlap, a description and the
$datasource data source on every panel, unit "s" on duration quantiles, and
$__rate_interval as the window of every range selector.

Live checks: every metric the dashboard names is in the contract
(docs/contract.md) and in the exporter's /metrics; the template variable
queries return values; and every panel expression, with the variables
substituted (once with each variable's "All" value, once with the values the
variable queries returned), returns a non-empty result from
/api/v1/query with at least one finite sample.

Prints one line per problem, naming the panel and the expression, and exits 1
if there is any.
"""
import argparse
import json
import math
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

REQUIRED_METRICS = [
    "container_startup_duration_seconds_bucket",
    "container_startup_phase_duration_seconds_bucket",
    "container_startup_phase_duration_seconds_sum",
    "container_startup_duration_seconds_sum",
    "container_startups_total",
    "container_startup_exporter_events_dropped_total",
    "container_startup_exporter_records_abandoned_total",
    "container_startup_exporter_table_evictions_total",
    "container_startup_exporter_probe_attached",
    "container_startup_exporter_spans_dropped_total",
]
# Grafana's built-in time variables and what to put in their place.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}
VAR_RE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)(?::(\w+))?\]\]|\$(\w+)")
METRIC_RE = re.compile(r"\bcontainer_[a-zA-Z0-9_:]+")
RANGE_RE = re.compile(r"\[([^\]]*)\]")
LABEL_VALUES_RE = re.compile(r"^\s*label_values\((.*),\s*(\w+)\s*\)\s*$", re.S)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

problems = []


def problem(msg):
    problems.append(msg)


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels") or [])


def check_static(dash):
    if dash.get("schemaVersion", 0) < 39:
        problem("schemaVersion %r is below 39" % dash.get("schemaVersion"))
    if dash.get("uid") != "container-startup-exporter":
        problem("uid %r is not container-startup-exporter" % dash.get("uid"))
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problem("no datasource variable of type datasource/prometheus")
    for name, label in (("instance", "instance"), ("runtime", "runtime")):
        v = variables.get(name)
        q = variable_query(v) if v else ""
        m = LABEL_VALUES_RE.match(q or "")
        if not v or v.get("type") != "query" or not m or m.group(2) != label or \
                not m.group(1).strip().startswith("container_startups_total"):
            problem("variable %s is not a label_values(container_startups_total..., %s) query" % (name, label))

    panels = list(walk_panels(dash.get("panels", [])))
    ids = [p.get("id") for p in panels]
    for i in sorted({i for i in ids if ids.count(i) > 1}, key=str):
        problem("panel id %r is used %d times" % (i, ids.count(i)))
    rects = []
    for p in panels:
        g = p.get("gridPos") or {}
        x, y, w, h = (g.get(k) for k in ("x", "y", "w", "h"))
        name = panel_name(p)
        if not all(isinstance(n, int) for n in (x, y, w, h)) or w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > 24:
            problem("%s: gridPos %r is not a rectangle inside the 24-column grid" % (name, g))
            continue
        for other, (ox, oy, ow, oh) in rects:
            if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                problem("%s overlaps %s (gridPos %r)" % (name, other, g))
        rects.append((name, (x, y, w, h)))

    for p in panels:
        if p.get("type") == "row":
            continue
        name = panel_name(p)
        if not (p.get("description") or "").strip():
            problem("%s has no description" % name)
        if (p.get("datasource") or {}).get("uid") != "${datasource}":
            problem("%s does not use the $datasource variable" % name)
        targets = p.get("targets") or []
        if not targets:
            problem("%s has no queries" % name)
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs):
            problem("%s repeats a refId: %s" % (name, refs))
        for t in targets:
            expr = t.get("expr") or ""
            if not expr.strip():
                problem("%s query %s has no expr" % (name, t.get("refId")))
            for window in RANGE_RE.findall(expr):
                if window.strip() != "$__rate_interval":
                    problem("%s: range [%s] is not [$__rate_interval] in: %s" % (name, window, expr))
            if "histogram_quantile" in expr:
                unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit")
                if unit != "s":
                    problem("%s shows a duration quantile in unit %r, not s" % (name, unit))
    return variables, panels


def panel_name(p):
    return "panel %r (id %s)" % (p.get("title"), p.get("id"))


def variable_query(v):
    q = v.get("query")
    if isinstance(q, dict):
        q = q.get("query")
    return q or v.get("definition") or ""


def exprs_of(variables, panels):
    """(where, expr) for every PromQL expression in the dashboard."""
    out = []
    for p in panels:
        for t in p.get("targets") or []:
            if t.get("expr"):
                out.append((panel_name(p), t["refId"], t["expr"]))
    return out


def metric_names(text):
    names = set(METRIC_RE.findall(text))
    return names


def parse_exposition(text):
    names = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def contract_metrics(path):
    names = set()
    with open(path) as f:
        for line in f:
            m = re.match(r"^\|\s*`([a-z_:][a-z0-9_:]*)`\s*\|\s*(counter|gauge|histogram)", line)
            if m:
                names.add(m.group(1))
    return names


def base_name(name):
    for s in HISTOGRAM_SUFFIXES:
        if name.endswith(s):
            return name[: -len(s)]
    return name


class Prom:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def query(self, expr):
        data = urllib.parse.urlencode({"query": expr}).encode()
        req = urllib.request.Request(self.url + "/api/v1/query", data=data)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            try:
                body = json.load(e)
            except ValueError:
                return None, "HTTP %d" % e.code
        except (urllib.error.URLError, OSError) as e:
            return None, "Prometheus unreachable: %s" % e
        if body.get("status") != "success":
            return None, "%s: %s" % (body.get("errorType"), body.get("error"))
        return body["data"], None


def regex_escape(value):
    # What Grafana does to multi-value variables inside =~"..." for Prometheus:
    # regex metacharacters get a backslash, itself escaped for the string literal.
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", value)


def substitute(expr, values):
    def repl(m):
        name = m.group(1) or m.group(3) or m.group(5)
        if name in BUILTINS:
            return BUILTINS[name]
        if name not in values:
            raise KeyError(name)
        return values[name]
    return VAR_RE.sub(repl, expr)


def format_selection(selected):
    if len(selected) == 1:
        return regex_escape(selected[0])
    return "(" + "|".join(regex_escape(v) for v in selected) + ")"


def resolve_variable(prom, v, values):
    """Values a label_values(...) variable query returns now."""
    q = substitute(variable_query(v), values)
    m = LABEL_VALUES_RE.match(q)
    selector, label = m.group(1), m.group(2)
    data, err = prom.query("group by (%s) (%s)" % (label, selector))
    if err:
        problem("variable %s: query %s failed: %s" % (v["name"], q, err))
        return []
    found = sorted({s["metric"].get(label) for s in data["result"] if s["metric"].get(label)})
    if not found:
        problem("variable %s: %s returned no values" % (v["name"], q))
    return found


def finite_values(data):
    if data["resultType"] == "scalar":
        samples = [data["result"]]
    elif data["resultType"] == "vector":
        samples = [s["value"] for s in data["result"]]
    else:
        samples = [v for s in data["result"] for v in s.get("values", [])]
    out = []
    for _, v in samples:
        f = float(v)
        if not math.isnan(f) and not math.isinf(f):
            out.append(f)
    return out


def check_live(dash, variables, panels, prom, metrics_text, contract):
    exported = parse_exposition(metrics_text)
    used = set()
    for v in variables.values():
        if v.get("type") == "query":
            used |= metric_names(variable_query(v))
    for _, _, expr in exprs_of(variables, panels):
        used |= metric_names(expr)
    for name in sorted(set(REQUIRED_METRICS) - used):
        problem("the dashboard does not use %s" % name)
    for name in sorted(used):
        if name not in exported:
            problem("metric %s is used by the dashboard but not exported on /metrics" % name)
        if contract is not None and base_name(name) not in contract and name not in contract:
            problem("metric %s is used by the dashboard but not in docs/contract.md" % name)

    # Resolve the query variables in order (runtime depends on instance).
    resolved = {}
    all_values = {"datasource": "prometheus"}
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            all_values[v["name"]] = v.get("allValue") or ".*"
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        resolved[v["name"]] = resolve_variable(prom, v, dict(all_values, **{
            k: format_selection(vals) for k, vals in resolved.items() if vals}))
    selected = dict(all_values, **{k: format_selection(vals) for k, vals in resolved.items() if vals})

    checked = 0
    for label, values in (("All", all_values), ("selected %s" % {k: v for k, v in resolved.items()}, selected)):
        for where, ref, expr in exprs_of(variables, panels):
            try:
                q = substitute(expr, values)
            except KeyError as e:
                problem("%s query %s uses an unknown variable $%s: %s" % (where, ref, e.args[0], expr))
                continue
            data, err = prom.query(q)
            checked += 1
            if err:
                problem("%s query %s (%s) failed: %s\n    expr: %s" % (where, ref, label, err, q))
            elif not data["result"] and data["resultType"] != "scalar":
                problem("%s query %s (%s) returned no series (a labelled self-metric must be "
                        "exported at 0 for its known label values)\n    expr: %s" % (where, ref, label, q))
            elif not finite_values(data):
                problem("%s query %s (%s) returned only NaN/Inf samples\n    expr: %s" % (where, ref, label, q))
    return checked


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dashboard")
    ap.add_argument("--prometheus", help="Prometheus base URL; without it only the static checks run")
    ap.add_argument("--metrics", help="the exporter's /metrics URL")
    ap.add_argument("--contract", help="docs/contract.md, whose Metrics table lists the allowed names")
    args = ap.parse_args()

    try:
        with open(args.dashboard) as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        print("dashboard: %s is not valid JSON: %s" % (args.dashboard, e))
        return 1
    variables, panels = check_static(dash)
    checked = 0
    if args.prometheus:
        metrics_text = ""
        try:
            with urllib.request.urlopen(args.metrics, timeout=10) as r:
                metrics_text = r.read().decode()
        except (urllib.error.URLError, OSError, ValueError) as e:
            problem("cannot read the exporter's metrics at %s: %s" % (args.metrics, e))
        contract = contract_metrics(args.contract) if args.contract else None
        if contract is not None and not contract:
            problem("no metric names found in %s" % args.contract)
        checked = check_live(dash, variables, panels, Prom(args.prometheus), metrics_text, contract)

    for p in problems:
        print("dashboard: " + p)
    n_panels = len([p for p in panels if p.get("type") != "row"])
    print("dashboard: %d panels, %d queries evaluated, %d problems" % (n_panels, checked, len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
