#!/usr/bin/env python3
"""Checks the objects `helm template` rendered for one values case.

    check_helm.py CASE RENDERED.yaml --release NAME [--config-out FILE]

CASE is one of the names in CASES below (each is a file in
tests/e2e/helm-values/ except "default"). Prints one line per failed
assertion and exits 1 if there is any; writes the ConfigMap's config.yaml
to --config-out so that the caller can hand it to `check-config`.
"""
import argparse
import hashlib
import os
import sys
import tomllib

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHART = "container-startup-exporter"
CHART_DIR = os.path.join(ROOT, "helm", CHART)
CONFIG_DIR = "/etc/container-startup-exporter"
# The minimal capability set (docs/deploy.md explains each one).
CAPABILITIES = ["BPF", "PERFMON"]
HOST_MOUNTS = {  # volume name: (host path, mount path, read-only)
    "btf": ("/sys/kernel/btf", "/sys/kernel/btf", True),
    "tracing": ("/sys/kernel/tracing", "/sys/kernel/tracing", True),
    "cgroup": ("/sys/fs/cgroup", "/sys/fs/cgroup", True),
}

# What each values case must render beyond the defaults.
CASES = {
    "default": {},
    "servicemonitor": {"serviceMonitor": True},
    "podmonitor": {"podMonitor": True},
    "otlp": {"otlp": True},
    "custom-config": {
        "port": 9700,
        "priorityClassName": "system-node-critical",
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ci", "effect": "NoSchedule"}],
        "config": {
            "http": {"listen_address": "0.0.0.0:9700", "recent_records": 32},
            "tracking": {"runtime_processes": ["containerd", "containerd-shim", "runc"],
                         "oci_runtimes": ["runc"]},
            "aggregator": {"record_timeout": "45s", "max_in_progress": 64},
            "metrics": {"startup_buckets": {"explicit": [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]}},
            "ring_buffer": {"size_bytes": 8388608, "drain_interval": "25ms"},
            "log": {"level": "debug"},
        },
    },
    "privileged": {"privileged": True},
}

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
    return cond


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def one(docs, kind):
    found = by_kind(docs, kind)
    check(len(found) == 1, "expected exactly one %s, rendered %d" % (kind, len(found)))
    return found[0] if found else {}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("rendered")
    ap.add_argument("--release", required=True)
    ap.add_argument("--config-out")
    args = ap.parse_args()
    want = CASES[args.case]
    release = args.release
    global CHART_VERSION, APP_VERSION
    with open(os.path.join(CHART_DIR, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    CHART_VERSION, APP_VERSION = chart["version"], chart["appVersion"]
    crate = crate_version()
    check(APP_VERSION == crate, "Chart.yaml appVersion %r is not the crate version %r (Cargo.toml)" % (APP_VERSION, crate))

    with open(args.rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]

    fullname = "%s-%s" % (release, CHART) if CHART not in release else release
    selector = {"app.kubernetes.io/name": CHART, "app.kubernetes.io/instance": release}
    labels = dict(selector, **{
        "helm.sh/chart": "%s-%s" % (CHART, CHART_VERSION),
        "app.kubernetes.io/version": APP_VERSION,
        "app.kubernetes.io/managed-by": "Helm",
    })

    kinds = sorted(d["kind"] for d in docs)
    expected_kinds = ["ConfigMap", "DaemonSet", "Service", "ServiceAccount"]
    if want.get("serviceMonitor"):
        expected_kinds.append("ServiceMonitor")
    if want.get("podMonitor"):
        expected_kinds.append("PodMonitor")
    check(kinds == sorted(expected_kinds), "rendered kinds %s, expected %s" % (kinds, sorted(expected_kinds)))

    for d in docs:
        meta = d.get("metadata", {})
        where = "%s/%s" % (d.get("kind"), meta.get("name"))
        check(meta.get("name") == fullname, "%s: name is not %s" % (where, fullname))
        got = meta.get("labels") or {}
        for k, v in labels.items():
            check(got.get(k) == v, "%s: label %s=%r, expected %r" % (where, k, got.get(k), v))

    ds = one(docs, "DaemonSet")
    spec = ds.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    tmpl_labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
    check(spec.get("selector", {}).get("matchLabels") == selector,
          "DaemonSet selector %r, expected %r" % (spec.get("selector"), selector))
    check(all(tmpl_labels.get(k) == v for k, v in labels.items()), "pod template lacks the standard labels")
    check(spec.get("updateStrategy") == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
          "updateStrategy %r" % spec.get("updateStrategy"))
    check(pod.get("hostPID") is True, "hostPID is %r, expected true" % pod.get("hostPID"))
    check(pod.get("hostNetwork") is False, "hostNetwork is %r, expected false" % pod.get("hostNetwork"))
    check(pod.get("serviceAccountName") == fullname, "serviceAccountName %r" % pod.get("serviceAccountName"))
    check(pod.get("tolerations") == want.get("tolerations", [{"operator": "Exists"}]),
          "tolerations %r" % pod.get("tolerations"))
    check(pod.get("priorityClassName") == want.get("priorityClassName"),
          "priorityClassName %r, expected %r" % (pod.get("priorityClassName"), want.get("priorityClassName")))

    containers = pod.get("containers", [])
    check(len(containers) == 1, "expected one container, got %d" % len(containers))
    c = containers[0] if containers else {}
    check(c.get("image") == "cse/container-startup-exporter:%s" % APP_VERSION, "image %r" % c.get("image"))
    check(c.get("args") == ["run", "--config", CONFIG_DIR + "/config.yaml"], "args %r" % c.get("args"))
    port = want.get("port", 9617)
    check(c.get("ports") == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
          "ports %r, expected metrics:%d" % (c.get("ports"), port))
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        got = (c.get(probe) or {}).get("httpGet")
        check(got == {"path": path, "port": "metrics"}, "%s.httpGet %r, expected %s on metrics" % (probe, got, path))
    check(bool((c.get("resources") or {}).get("requests")), "no resource requests")

    sc = c.get("securityContext") or {}
    check(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true")
    check(sc.get("runAsUser") == 0, "runAsUser %r, expected 0" % sc.get("runAsUser"))
    if want.get("privileged"):
        check(sc.get("privileged") is True, "privileged is not true")
        check("capabilities" not in sc and "allowPrivilegeEscalation" not in sc,
              "privileged container still sets capabilities/allowPrivilegeEscalation: %r" % sc)
    else:
        check(sc.get("privileged") is False, "privileged is %r, expected false" % sc.get("privileged"))
        check(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false")
        caps = sc.get("capabilities") or {}
        check(caps.get("drop") == ["ALL"], "capabilities.drop %r, expected [ALL]" % caps.get("drop"))
        check(caps.get("add") == CAPABILITIES, "capabilities.add %r, expected %r" % (caps.get("add"), CAPABILITIES))
        check(sc.get("seccompProfile") == {"type": "RuntimeDefault"}, "seccompProfile %r" % sc.get("seccompProfile"))

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    check(sorted(volumes) == sorted(list(HOST_MOUNTS) + ["config"]), "volumes %s" % sorted(volumes))
    check(sorted(mounts) == sorted(volumes), "volumeMounts %s do not match volumes" % sorted(mounts))
    for name, (host, path, ro) in HOST_MOUNTS.items():
        hp = volumes.get(name, {}).get("hostPath")
        check(hp == {"path": host, "type": "Directory"}, "volume %s hostPath %r, expected %s" % (name, hp, host))
        m = mounts.get(name, {})
        check(m.get("mountPath") == path, "mount %s at %r, expected %s" % (name, m.get("mountPath"), path))
        check(bool(m.get("readOnly")) == ro, "mount %s readOnly=%r, expected %r" % (name, m.get("readOnly"), ro))
    cm_mount = mounts.get("config", {})
    check(cm_mount.get("mountPath") == CONFIG_DIR and cm_mount.get("readOnly") is True,
          "config mount %r" % cm_mount)
    check(volumes.get("config", {}).get("configMap", {}).get("name") == fullname,
          "config volume does not use ConfigMap %s" % fullname)

    env = {e["name"]: e for e in c.get("env", [])}
    otel = sorted(n for n in env if n.startswith("OTEL_"))
    if want.get("otlp"):
        val = lambda n: env.get(n, {}).get("value")
        check(val("OTEL_EXPORTER_OTLP_ENDPOINT") == "http://otel-collector.observability.svc:4317",
              "OTEL_EXPORTER_OTLP_ENDPOINT %r" % val("OTEL_EXPORTER_OTLP_ENDPOINT"))
        check(val("OTEL_EXPORTER_OTLP_PROTOCOL") == "grpc", "OTEL_EXPORTER_OTLP_PROTOCOL %r" % val("OTEL_EXPORTER_OTLP_PROTOCOL"))
        check(val("OTEL_SERVICE_NAME") == "cse-ci", "OTEL_SERVICE_NAME %r" % val("OTEL_SERVICE_NAME"))
        check(val("OTEL_RESOURCE_ATTRIBUTES") ==
              "k8s.node.name=$(NODE_NAME),k8s.pod.name=$(POD_NAME),deployment.environment=ci",
              "OTEL_RESOURCE_ATTRIBUTES %r" % val("OTEL_RESOURCE_ATTRIBUTES"))
        ref = env.get("OTEL_EXPORTER_OTLP_HEADERS", {}).get("valueFrom", {}).get("secretKeyRef")
        check(ref == {"name": "otlp-auth", "key": "authorization"}, "OTEL_EXPORTER_OTLP_HEADERS secretKeyRef %r" % ref)
        names = list(env)
        check(names.index("NODE_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES") and
              names.index("POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES"),
              "NODE_NAME/POD_NAME must precede OTEL_RESOURCE_ATTRIBUTES for $(VAR) expansion")
    else:
        check(otel == [], "OTEL_* variables set although otlp is off: %s" % otel)
    check(env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName",
          "NODE_NAME is not the downward-API node name")

    svc = one(docs, "Service")
    check(svc.get("spec", {}).get("selector") == selector, "Service selector %r" % svc.get("spec", {}).get("selector"))
    check(svc.get("spec", {}).get("ports") == [{"name": "metrics", "port": 9617, "targetPort": "metrics", "protocol": "TCP"}],
          "Service ports %r" % svc.get("spec", {}).get("ports"))

    for kind, key, target_labels in (("ServiceMonitor", "endpoints", svc.get("metadata", {}).get("labels", {})),
                                     ("PodMonitor", "podMetricsEndpoints", tmpl_labels)):
        for mon in by_kind(docs, kind):
            ms = mon.get("spec", {})
            sel = ms.get("selector", {}).get("matchLabels", {})
            check(sel and all(target_labels.get(k) == v for k, v in sel.items()),
                  "%s selector %r does not match its targets" % (kind, sel))
            check(ms.get("namespaceSelector") == {"matchNames": ["default"]}, "%s namespaceSelector" % kind)
            check(mon["metadata"]["labels"].get("release") == "prom", "%s lacks the label release=prom" % kind)
            eps = ms.get(key, [])
            check(len(eps) == 1, "%s has %d endpoints" % (kind, len(eps)))
            ep = eps[0] if eps else {}
            for k, v in (("port", "metrics"), ("path", "/metrics"), ("interval", "15s"), ("scrapeTimeout", "10s")):
                check(ep.get(k) == v, "%s endpoint %s=%r, expected %r" % (kind, k, ep.get(k), v))
            check((ep.get("relabelings") or [{}])[0] ==
                  {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"},
                  "%s: first relabeling does not set node" % kind)

    cm = one(docs, "ConfigMap")
    text = cm.get("data", {}).get("config.yaml", "")
    config = yaml.safe_load(text) or {}
    annotation = spec.get("template", {}).get("metadata", {}).get("annotations", {}).get("checksum/config")
    check(annotation == hashlib.sha256(text.rstrip("\n").encode()).hexdigest(),
          "checksum/config annotation is not the sha256 of the rendered config")
    if "config" in want:
        expected = merge(load_default_config(), want["config"])
    else:
        expected = merge(load_default_config(), {"http": {"listen_address": "0.0.0.0:9617"}})
    check(config == expected, "rendered config differs from the expected one:\n  got      %r\n  expected %r" % (config, expected))

    if args.config_out:
        with open(args.config_out, "w") as f:
            f.write(text)

    for msg in failures:
        print("helm %s: %s" % (args.case, msg))
    return 1 if failures else 0


def crate_version():
    with open(os.path.join(ROOT, "Cargo.toml"), "rb") as f:
        return tomllib.load(f)["workspace"]["package"]["version"]


def load_default_config():
    """config/default.yaml: the chart's values.yaml must not drift from it.
    Its `otlp:` section is the one exception: the chart sets OTLP through the
    standard OTEL_* variables (values `otlp.*`), which win over the file."""
    with open(os.path.join(ROOT, "config", "default.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg.pop("otlp", None)
    return cfg


def merge(base, over):
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and \
            not ("explicit" in v or "exponential" in v) else v
    return out


if __name__ == "__main__":
    sys.exit(main())
