#!/usr/bin/env python3
"""`make schemathesis`: Schemathesis against the local run, every check on.

Starts `cargo run` (the sandbox, the four functions behind the local router, in-memory stores) on a free loopback
port, connects the connection `bu_st` through the sandbox's authorize flow (claire@dupont.example, Belgium), runs a
connection test so its settings exist, then runs `schemathesis run docs/openapi.json --checks all` with the PSA key
and `scripts/schemathesis.toml` (a fixed seed and a bounded number of examples, so a run takes about a minute and
answers the same way every time). Stops the server it started. Exit status: Schemathesis's.
Needs the venv's schemathesis (scripts/setup.sh installs it). Loopback only."""
import json, os, pathlib, signal, socket, subprocess, sys, time, urllib.error, urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
PSA_KEY = "local-psa-key-not-secret-0123456789"  # the local run's key (local/src/main.rs)
CONNECTION = "bu_st"
SETTINGS = {"item_code": "CONSULT", "journal_code": "72", "tax_code": "", "tax_categories": [],
            "send_invoice_to_customer": False, "delivery": "psa"}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


http = urllib.request.build_opener(NoRedirect)


def call(method, url, body=None, auth=True):
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
    if auth:
        req.add_header("Authorization", f"Bearer {PSA_KEY}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with http.open(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(base):
    s, _, b = call("POST", f"{base}/connections/{CONNECTION}/exact/authorize",
                   {"country": "be", "return_url": "http://localhost/done"})
    assert s == 200, (s, b)
    authorize_url = json.loads(b)["authorize_url"] + "&sandbox_login=claire@dupont.example"
    s, h, b = call("GET", authorize_url, auth=False)
    assert s == 302, ("sandbox sign-in", s, b[:300])
    s, h, b = call("GET", h["location"], auth=False)
    assert s == 302 and "exact=connected" in h.get("location", ""), ("callback", s, h, b[:300])
    s, _, b = call("POST", f"{base}/connections/{CONNECTION}/exact/test", SETTINGS)
    assert s == 200, ("connection test", s, b[:500])
    print(f"schemathesis: {CONNECTION} connected (Belgium) and tested; settings saved")


def main():
    venv = pathlib.Path(os.environ.get("VENV", ROOT / ".venv"))
    st = venv / "bin" / "schemathesis"
    if not st.exists():
        sys.exit(f"schemathesis: {st} missing; run scripts/setup.sh")
    out = ROOT / "target" / "schemathesis"
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cargo", "build", "--locked", "-q"], cwd=ROOT, check=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(out / "server.log", "wb")
    server = subprocess.Popen(["cargo", "run", "--locked", "-q"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, env={**os.environ, "LISTEN": f"127.0.0.1:{port}"},
                              start_new_session=True)
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if server.poll() is not None:
                    sys.exit(f"schemathesis: the local server stopped: {(out / 'server.log').read_text()}")
                time.sleep(0.1)
        connect(base)
        t0 = time.monotonic()
        rc = subprocess.run([str(st), "--config-file", str(ROOT / "scripts" / "schemathesis.toml"), "run",
                             str(ROOT / "docs" / "openapi.json"), "--url", base,
                             "-H", f"Authorization: Bearer {PSA_KEY}", "--checks", "all",
                             "--report", "junit", "--report-dir", str(out), "--no-color"],
                            cwd=ROOT).returncode
        print(f"schemathesis: {time.monotonic() - t0:.0f} s, exit {rc}")
        return rc
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
