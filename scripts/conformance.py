#!/usr/bin/env python3
"""Runs the WOPI conformance suite (../shared/wopi-validator) against wopigate, in every
configuration a host can be in, so that every test outside the WopiCoauth category runs.

Each run is a fresh data directory and a fresh server on 127.0.0.1:
  edit           an owner's edit session on default settings: every group that applies;
  view           a view-only session (UserCanNotWriteRelative): PutRelativeFileUnsupported;
  no-containers  WOPIGATE_CONTAINERS=false: RenameFileIfCreateChildFileIsNotSupported;
each without proof keys and with a proof key in the viewer's discovery (every request signed).
The script fails on any failed test (the unsigned runs excepted for the three ProofKeys tests
that need signed requests), and on any test outside WopiCoauth that passed in no run: a skip is
not a pass.

Usage: scripts/conformance.py [--binary target/debug/wopigate] [--validator DIR] [--env K=V ...]
"""
import argparse
import base64
import hashlib
import hmac
import json
import urllib.parse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

# Out of scope: co-authoring (WopiCoauth; chunked transfer and coauth locks).
EXCLUDED_CATEGORY = "WopiCoauth"
# (name, the session's preferred action, extra settings, the one group it runs; None = all)
CONFIGS = [
    ("edit", "edit", {}, None),
    ("view", "view", {}, "PutRelativeFileUnsupported"),
    ("no-containers", "edit", {"WOPIGATE_CONTAINERS": "false"}, "RenameFileIfCreateChildFileIsNotSupported"),
]
# Without signing, the validator sends no proof headers at all: these requests are then identical
# to the ones that must succeed, and no host can answer them 500. They run in the signed run.
UNSIGNED_IMPOSSIBLE = {
    "ProofKeys/ProofKeys.CurrentInvalid.OldValidSignedWithOldKey",
    "ProofKeys/ProofKeys.CurrentInvalid.OldInvalid",
    "ProofKeys/ProofKeys.TimestampOlderThan20Min",
}
CALLER_SECRET = "conformance-caller-secret-" + uuid.uuid4().hex
TOKEN_SECRET = "conformance-token-secret-" + uuid.uuid4().hex
VIEWER_ID = str(uuid.uuid4())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def caller_jwt(sub: str) -> str:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"sub": sub, "name": "Validator", "exp": int(time.time()) + 3600}).encode())
    signing_input = f"{header}.{claims}".encode()
    sig = hmac.new(CALLER_SECRET.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{claims}.{b64url(sig)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def discovery_xml(proof_key_element: str) -> str:
    urlsrc = "https://office.invalid/hosting/WopiTestFrame.aspx?&lt;ui=UI_LLCC&amp;&gt;&lt;wopisrc=WOPI_SOURCE&amp;&gt;"
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<wopi-discovery><net-zone name="external-https">'
        '<app name="WopiTest">'
        f'<action name="view" ext="wopitest" urlsrc="{urlsrc}"/>'
        f'<action name="edit" ext="wopitest" requires="locks,update" urlsrc="{urlsrc}"/>'
        f'<action name="getinfo" ext="wopitest" urlsrc="{urlsrc}"/>'
        f"</app></net-zone>{proof_key_element}</wopi-discovery>\n"
    )


def wait_healthy(port: int, proc: subprocess.Popen) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"wopigate exited early with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("wopigate did not become ready")


def open_session(port: int, action: str) -> dict:
    body = json.dumps({"uri": "cloudreve://my/Validator/conformance.wopitest", "viewer_id": VIEWER_ID, "preferred_action": action})
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v4/file/viewerSession", data=body.encode(), method="PUT",
        headers={"Authorization": "Bearer " + caller_jwt("validator"), "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        envelope = json.load(r)
    if envelope.get("code") != 0:
        raise SystemExit(f"viewerSession failed: {envelope}")
    return envelope["data"]


def run(name: str, binary: str, validator: str, signed: bool, backend_env: dict, action: str, group) -> tuple:
    """Returns (ok, the report's results, unexpected failures)."""
    with tempfile.TemporaryDirectory(prefix=f"wopigate-{name}-") as tmp:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        proof_args, element = [], ""
        if signed:
            keys = os.path.join(tmp, "keys")
            subprocess.run([sys.executable, os.path.join(validator, "wopivalidate.py"), "--gen-proof-keys", keys],
                           check=True, stdout=subprocess.DEVNULL)
            with open(os.path.join(keys, "discovery-proof-key.xml")) as f:
                element = f.read().strip()
            proof_args = ["--proof-key", os.path.join(keys, "proof-new.pem"),
                          "--proof-key-old", os.path.join(keys, "proof-old.pem")]
        discovery = os.path.join(tmp, "discovery.xml")
        with open(discovery, "w") as f:
            f.write(discovery_xml(element))
        port = free_port()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "WOPIGATE_BIND": f"127.0.0.1:{port}",
            "WOPIGATE_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "WOPIGATE_DATA_DIR": data,
            "WOPIGATE_TOKEN_SECRET": TOKEN_SECRET,
            "WOPIGATE_CALLER_JWT_SECRET": CALLER_SECRET,
            "WOPIGATE_VIEWERS": json.dumps([{"id": VIEWER_ID, "name": "Validator", "discovery": discovery}]),
            "WOPIGATE_LOG_FORMAT": "text",
            "RUST_LOG": "warn",
        }
        env.update(backend_env)
        # The empty test file goes in through wopigate itself, into whichever store is set.
        subprocess.run([binary, "put", "validator/Validator/conformance.wopitest"], env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, check=True)
        log_path = os.path.join(tmp, "wopigate.log")
        with open(log_path, "w") as log:
            proc = subprocess.Popen([binary], env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_healthy(port, proc)
                data = open_session(port, action)
                session = data["session"]
                token = session["access_token"]
                # The action URL carries the WOPISrc (tokens are opaque: nothing to read in them).
                query = urllib.parse.parse_qs(urllib.parse.urlparse(data["wopi_src"]).query)
                wopisrc = next(v[0] for k, v in query.items() if k.lower() == "wopisrc")
                report = os.path.join(tmp, "report.json")
                print(f"\n== conformance run '{name}' ({'signed' if signed else 'unsigned'}, {action} session"
                      f"{', group ' + group if group else ''}), WOPISrc {wopisrc}", flush=True)
                result = subprocess.run(
                    [sys.executable, os.path.join(validator, "wopivalidate.py"), "-w", wopisrc, "-t", token,
                     "-l", str(session["expires"]), "-c", os.path.join(validator, "TestCases.xml"),
                     "-e", "All", "-s", "--json-report", report] + (["-g", group] if group else []) + proof_args)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
        with open(report) as f:
            results = json.load(f)["results"]
        failed = [f"{r['group']}/{r['name']}" for r in results if r["status"] == "Fail"]
        unexpected = [f for f in failed if signed or f not in UNSIGNED_IMPOSSIBLE]
        ok = not unexpected and result.returncode in (0, 1)
        if not signed and failed:
            print(f"conformance: unsigned run: {len(failed) - len(unexpected)} ProofKeys tests cannot pass without "
                  "signed requests (they pass in the signed run)", flush=True)
        if unexpected:
            print("conformance: failed: " + ", ".join(unexpected), flush=True)
            with open(log_path) as f:
                tail = f.read()[-4000:]
            print("--- wopigate log (tail) ---\n" + tail, flush=True)
        passed = sum(1 for r in results if r["status"] == "Pass")
        print(f"conformance run '{name}': {'ok' if ok else 'FAILED'} ({passed} tests passed)", flush=True)
        return ok, results, len(unexpected)


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(here, "..", "target", "debug", "wopigate"))
    ap.add_argument("--validator", default=os.path.join(here, "..", "..", "shared", "wopi-validator"))
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra WOPIGATE_* settings for the server (another store or lock backend)")
    ap.add_argument("--label", default="local", help="names the backend in the output")
    args = ap.parse_args()
    backend_env = dict(e.split("=", 1) for e in args.env)
    ok, failures = True, 0
    # Per signing mode: every test outside WopiCoauth must pass in some configuration.
    for signed in (False, True):
        mode = "proof-keys" if signed else "plain"
        outcomes = {}
        for name, action, env, group in CONFIGS:
            run_ok, results, failed = run(f"{args.label}-{name}-{mode}", args.binary, args.validator, signed,
                                          {**backend_env, **env}, action, group)
            ok &= run_ok
            failures += failed
            for r in results:
                if r["category"] != EXCLUDED_CATEGORY:
                    key = f"{r['group']}/{r['name']}"
                    outcomes.setdefault(key, set()).add(r["status"])
        impossible = set() if signed else UNSIGNED_IMPOSSIBLE
        never = sorted(k for k, v in outcomes.items() if "Pass" not in v and k not in impossible)
        passed = sum(1 for v in outcomes.values() if "Pass" in v)
        print(f"conformance ({args.label}, {mode}): {passed} of {len(outcomes)} tests outside {EXCLUDED_CATEGORY} "
              f"passed in some configuration", flush=True)
        if never:
            ok = False
            print(f"conformance ({args.label}, {mode}): passed in no configuration: " + ", ".join(never), flush=True)
    print(f"conformance: {'ok' if ok else 'FAILED'}, {failures} failed", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
