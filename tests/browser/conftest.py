"""Fixtures of the portal's browser test: a real `herald serve`, an HTTPS receiver, Chromium.

The database comes from PORTAL_TEST_DATABASE_URL (scripts/test-portal sets it, once for SQLite and
once for PostgreSQL); without it a SQLite file in a temporary directory is used.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CATALOG = Path(__file__).resolve().parent / "catalog.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Receiver:
    """A local HTTPS receiver (trustme certificate for 127.0.0.1) that records every request.

    `/fail` always answers 500; `/flaky` answers 500 until `flaky_ok` is set; anything else 200.
    """

    def __init__(self, ca: trustme.CA):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.flaky_ok = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                with receiver.lock:
                    receiver.requests.append(
                        {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                         "body": body, "json": parsed})
                failing = self.path == "/fail" or (self.path == "/flaky" and not receiver.flaky_ok)
                answer = b'{"ok":false}' if failing else b'{"ok":true}'
                self.send_response(500 if failing else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(ctx)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of_type(self, event_type: str, path: str | None = None) -> list[dict]:
        with self.lock:
            return [r for r in self.requests
                    if r["json"] and r["json"].get("type") == event_type and (path is None or r["path"] == path)]

    def close(self):
        self.server.shutdown()


class Herald:
    def __init__(self, binary: str, database_url: str, workdir: Path, ca_pem: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.admin_token = "adm_" + secrets.token_hex(16)
        self.log_path = workdir / "herald.log"
        env = dict(os.environ)
        env.pop("HERALD_EVENT_TYPES", None)
        env.update({
            "HERALD_LISTEN": f"127.0.0.1:{self.port}",
            "HERALD_DATABASE_URL": database_url,
            "HERALD_ADMIN_TOKEN": self.admin_token,
            "HERALD_SECRETS_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "HERALD_ALLOW_NETWORKS": "127.0.0.0/8",
            "HERALD_EXTRA_ROOT_CERTS": str(ca_pem),
            "HERALD_PUBLIC_URL": self.base,
            "HERALD_RETRY_SCHEDULE": "1s,1s",
            # A catalog file with schemas and examples, so the portal's catalog has them to show.
            "HERALD_EVENT_CATALOG": str(CATALOG),
            "RUST_LOG": env.get("RUST_LOG", "info"),
        })
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([binary, "serve"], env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=workdir)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"herald serve exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("herald did not become ready in 60 s:\n" + self.log_text()[-3000:])
            time.sleep(0.2)

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def request(self, method: str, path: str, body=None, token: str | None = None, headers=None):
        """Returns (status, parsed JSON or None, response headers)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + (token or self.admin_token))
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None), r.headers
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            return e.code, parsed, e.headers

    def admin(self, method: str, path: str, body=None, expect: int | None = None):
        status, data, _ = self.request(method, path, body)
        if expect is not None:
            assert status == expect, f"{method} {path} answered {status}: {data}"
        return data

    def new_org(self, name: str) -> dict:
        return self.admin("POST", "/admin/v1/orgs", {"name": name}, expect=201)

    def session(self, org_id: str, **body) -> dict:
        s = self.admin("POST", f"/admin/v1/orgs/{org_id}/portal-sessions", body, expect=201)
        assert s["url"] == f"{self.base}/portal/#token={s['token']}", s
        return s

    def publish(self, org_id: str, event_type: str, data: dict) -> dict:
        return self.admin("POST", "/admin/v1/events", {"org_id": org_id, "type": event_type, "data": data}, expect=202)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="herald-portal-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def ca():
    return trustme.CA()


@pytest.fixture(scope="session")
def receiver(ca):
    r = Receiver(ca)
    yield r
    r.close()


@pytest.fixture(scope="session")
def herald(workdir, ca):
    binary = os.environ.get("HERALD_BIN") or str(
        Path(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/herald-target")) / "debug" / "herald")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"no herald binary at {binary}: build it with cargo build -p herald-cli, or set HERALD_BIN")
    ca_pem = workdir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    url = os.environ.get("PORTAL_TEST_DATABASE_URL") or f"sqlite://{workdir / 'herald.db'}"
    h = Herald(binary, url, workdir, ca_pem)
    print(f"\nherald on {h.base}, database {url.split('@')[-1]}")
    yield h
    h.stop()


@pytest.fixture(scope="session")
def backend_name():
    url = os.environ.get("PORTAL_TEST_DATABASE_URL", "")
    return "postgres" if url.startswith("postgres") else "sqlite"


@pytest.fixture(scope="session")
def shots_dir():
    d = Path(os.environ.get("PORTAL_SCREENSHOTS") or ROOT / "target" / "portal-screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def browser():
    exe = shutil.which("chromium")
    if not exe:
        pytest.fail("chromium is not installed (apt-get install -y chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True)
        yield b
        b.close()


@pytest.fixture()
def new_page(browser, herald):
    """Opens pages in fresh light-theme 1280x800 contexts with clipboard access; fails the test on
    a page error (an uncaught exception or a CSP violation report in the console)."""
    contexts = []
    problems: list[str] = []

    def make(**kw):
        opts = {"viewport": {"width": 1280, "height": 800}, "color_scheme": "light"}
        opts.update(kw)
        ctx = browser.new_context(**opts)
        ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=herald.base)
        ctx.set_default_timeout(15000)
        contexts.append(ctx)
        page = ctx.new_page()
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("console", lambda m: problems.append(f"console: {m.text}")
                if m.type == "error" and ("Content Security Policy" in m.text or "Refused" in m.text) else None)
        return page

    yield make
    for c in contexts:
        c.close()
    assert not problems, "\n".join(problems)
