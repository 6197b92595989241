#!/usr/bin/env python3
"""Runs schemathesis against the platform API (/api/v4) of a fresh wopigate.

Two runs against one server on 127.0.0.1 (a temporary data directory, a caller JWT secret, a
Collabora viewer from tests/fixtures/discovery/collabora.xml and a file in the store):
  1. wopigate's own document, /api/v4/openapi.json, positive and negative data: no 5xx, every
     status, content type, header and body as the document says, 405 with Allow for a wrong method;
  2. Cloudreve's published description of viewerSession (../shared/api/), positive data only:
     its errors are HTTP 200 with a code, so neither negative-data nor wrong-method checks apply.
The calls carry a valid caller JWT; the examples in both documents name the viewer configured
here and files that exist, so sessions are really created. Fails when either run fails.

Usage: scripts/api-test.py [--binary target/debug/wopigate] [--max-examples N] [--seed N]
"""
import argparse
import json
import re
import os
import subprocess
import sys
import tempfile

from conformance import CALLER_SECRET, TOKEN_SECRET, caller_jwt, free_port, wait_healthy

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Cloudreve's own example viewer id, used by both documents' examples.
VIEWER_ID = "af01b85b-f57d-46d2-8ad6-1d9b96548e78"
OWN_CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
              "response_headers_conformance", "response_schema_conformance", "unsupported_method",
              "allow_header_conformance"]
CLOUDREVE_CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
                    "response_schema_conformance"]


def schemathesis(label: str, location: str, args: list, har: str, cwd: str) -> bool:
    command = ["schemathesis", "run", location, "--no-color", "--workers", "1",
               "--generation-database", "none", "--warnings", "off",
               "--report", "har", "--report-har-path", har] + args
    # The command as run, but no token in the output (even a test one).
    shown = [re.sub(r"(Bearer )\S+", r"\1***", part) for part in command]
    print(f"\n== schemathesis: {label}\n$ {' '.join(shown)}", flush=True)
    # Run in the temporary directory: schemathesis keeps a cache of failures (.schemathesis/) in
    # its working directory and replays it; every run here starts clean.
    ok = subprocess.run(command, cwd=cwd).returncode == 0
    try:
        with open(har) as f:
            requests = len(json.load(f)["log"]["entries"])
    except (OSError, ValueError, KeyError):
        requests = "?"
    print(f"api-test run: {label}: {'ok' if ok else 'FAILED'} ({requests} requests)", flush=True)
    return ok


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "wopigate"))
    ap.add_argument("--cloudreve", default=os.path.join(ROOT, "..", "shared", "api",
                                                        "cloudreve-viewer-session.openapi.yaml"))
    ap.add_argument("--max-examples", type=int, default=100, help="per operation and run")
    ap.add_argument("--seed", type=int, default=20260101)
    ap.add_argument("--report-dir", default=os.path.join(ROOT, "target"),
                    help="where the requests and answers of each run are written (HAR)")
    args = ap.parse_args()
    report_dir = os.path.abspath(args.report_dir)
    cloudreve_document = os.path.abspath(args.cloudreve)
    with tempfile.TemporaryDirectory(prefix="wopigate-api-test-") as tmp:
        data = os.path.join(tmp, "data")
        # The files the documents' examples name: the caller's own and a share's.
        for path in ["u1/Docs/report.docx", "owner/Shared/1.docx"]:
            os.makedirs(os.path.dirname(os.path.join(data, path)), exist_ok=True)
            with open(os.path.join(data, path), "wb") as f:
                f.write(b"x")
        os.makedirs(os.path.join(data, "u1", "Inspirations"))
        shares = os.path.join(data, ".wopigate", "objects", "shares")
        os.makedirs(shares)
        with open(os.path.join(shares, "JbVTn.json"), "w") as f:
            json.dump({"owner": "owner", "path": "Shared"}, f)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "WOPIGATE_BIND": f"127.0.0.1:{port}",
            "WOPIGATE_PUBLIC_URL": base,
            "WOPIGATE_DATA_DIR": data,
            "WOPIGATE_TOKEN_SECRET": TOKEN_SECRET,
            "WOPIGATE_CALLER_JWT_SECRET": CALLER_SECRET,
            "WOPIGATE_VIEWERS": json.dumps([{"id": VIEWER_ID, "name": "Collabora",
                                             "discovery": os.path.join(ROOT, "tests/fixtures/discovery/collabora.xml")}]),
            "WOPIGATE_LOG_FORMAT": "text",
            "RUST_LOG": "warn",
        }
        log_path = os.path.join(tmp, "wopigate.log")
        with open(log_path, "w") as log:
            proc = subprocess.Popen([args.binary], env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_healthy(port, proc)
                common = ["--header", f"Authorization: Bearer {caller_jwt('u1')}",
                          "--max-examples", str(args.max_examples), "--seed", str(args.seed)]
                own = schemathesis("wopigate's /api/v4/openapi.json (positive and negative data)",
                                   f"{base}/api/v4/openapi.json",
                                   common + ["--mode", "all", "--checks", ",".join(OWN_CHECKS)],
                                   os.path.join(report_dir, "api-test-own.har"), tmp)
                cloudreve = schemathesis("Cloudreve's viewerSession description (positive data)", cloudreve_document,
                                         common + ["--url", f"{base}/api/v4", "--mode", "positive",
                                                   "--checks", ",".join(CLOUDREVE_CHECKS),
                                                   "--exclude-checks", "negative_data_rejection,unsupported_method"],
                                         os.path.join(report_dir, "api-test-cloudreve.har"), tmp)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
        if proc.returncode not in (0, -15):
            print(f"api-test: wopigate exited with {proc.returncode}", flush=True)
        ok = own and cloudreve
        if not ok:
            with open(log_path) as f:
                print("--- wopigate log (tail) ---\n" + f.read()[-4000:], flush=True)
        print(f"api-test: {int(own) + int(cloudreve)} passed, {2 - int(own) - int(cloudreve)} failed", flush=True)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
