"""The portal in a real browser (Chromium via Playwright) against a real `herald serve`.

Run with scripts/test-portal, which runs this file once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import secrets
import shutil
import string
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from conftest import CATALOG, ROOT, wait_until

PORTAL = ROOT / "crates" / "api" / "portal"
ASSETS = ["index.html", "portal.js", "portal.css", "favicon.svg"]
# Names of every control that changes something (and of the tabs that lead only to them).
WRITE_CONTROLS = re.compile(
    r"^\W*(add endpoint|create|save|delete|disable|enable|rotate|replay|send test|recover|preview|settings)", re.I)
_axe = Axe()


def axe_scan(page: Page, name: str):
    """No serious or critical axe-core violation on the page as it is now."""
    results = _axe.run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
    detail = "\n".join(
        f"  {v['impact']}: {v['id']} — {v['help']} ({', '.join(n['target'][0] for n in v['nodes'][:4])})" for v in bad)
    assert not bad, f"axe found serious/critical violations on the {name} page:\n{detail}"
    minor = ", ".join(f"{v['id']} ({v.get('impact')})" for v in results.response["violations"])
    print(f"axe {name}: no serious or critical violation" + (f"; minor: {minor}" if minor else ""))


def shot(page: Page, shots_dir: Path, name: str, backend: str):
    path = shots_dir / f"{backend}-{name}.png"
    page.screenshot(path=str(path))
    return path


def ready(page: Page):
    expect(page.locator("body[data-ready]")).to_have_count(1)


def go(page: Page, hash_: str):
    page.evaluate("h => { location.hash = h; }", hash_)


def assert_no_write_controls(page: Page, where: str):
    for role in ("button", "link"):
        found = page.get_by_role(role, name=WRITE_CONTROLS)
        names = [found.nth(i).inner_text() for i in range(found.count())]
        assert not names, f"read-only session shows changing {role}s on {where}: {names}"
    assert page.locator("main form").count() == 0 or where == "catalog", f"a form on {where} in a read-only session"


# ---------- Static checks: headers, inline code, weight ----------

class _Inline(HTMLParser):
    def __init__(self):
        super().__init__()
        self.problems = []

    def handle_starttag(self, tag, attrs):
        names = [a for a, _ in attrs]
        if tag == "script" and "src" not in names:
            self.problems.append("inline <script>")
        if tag == "style":
            self.problems.append("<style> element")
        for a in names:
            if a.startswith("on"):
                self.problems.append(f"{a}= attribute on <{tag}>")
            if a == "style":
                self.problems.append(f"style= attribute on <{tag}>")


def test_portal_is_served_with_strict_csp_and_no_inline_code(herald):
    with urllib.request.urlopen(herald.base + "/portal/") as r:
        html = r.read().decode()
        csp = r.headers.get("Content-Security-Policy", "")
        assert r.status == 200
        assert r.headers.get_content_type() == "text/html"
        assert "default-src 'self'" in csp, csp
        assert "frame-ancestors 'none'" in csp, csp
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, csp
        assert r.headers.get("X-Content-Type-Options", "").lower() == "nosniff"
        assert r.headers.get("Referrer-Policy", "").lower() == "no-referrer"
    parser = _Inline()
    parser.feed(html)
    assert not parser.problems, parser.problems
    assert 'src="portal.js"' in html and 'href="portal.css"' in html
    # The served files are exactly the committed ones, and each carries the CSP too.
    for name in ASSETS[1:]:
        with urllib.request.urlopen(f"{herald.base}/portal/{name}") as r:
            assert r.read() == (PORTAL / name).read_bytes(), name
            assert "default-src 'self'" in r.headers.get("Content-Security-Policy", ""), name
    # Untrusted text is only ever set as text: no HTML-parsing sinks in the script.
    js = (PORTAL / "portal.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, f"portal.js uses {sink}"
    assert not re.search(r"^\s*(import|export)\s", js, re.M), "portal.js must be one classic script"


def test_page_weight_budget(herald):
    total_gz = 0
    sizes = {}
    for name in ASSETS:
        raw = (PORTAL / name).read_bytes()
        gz = len(gzip.compress(raw, 9))
        req = urllib.request.Request(f"{herald.base}/portal/{name if name != 'index.html' else ''}",
                                     headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req) as r:
            wire = len(r.read())
            enc = r.headers.get("Content-Encoding")
        sizes[name] = (len(raw), gz, wire, enc)
        total_gz += gz
    for name, (raw, gz, wire, enc) in sizes.items():
        print(f"  {name:12} {raw:7} bytes raw, {gz:6} gzip, {wire:6} on the wire ({enc or 'identity'})")
    print(f"  total gzip {total_gz} bytes ({total_gz / 1024:.1f} KiB)")
    assert total_gz < 150 * 1024, f"first load {total_gz} bytes gzip is over the 150 KB budget"
    assert sizes["portal.js"][1] < 60 * 1024, "portal.js over the 60 KB gzip budget"


# ---------- Session pages ----------

def test_missing_and_unknown_tokens_get_plain_pages(new_page, herald):
    page = new_page()
    page.goto(herald.base + "/portal/")
    expect(page.get_by_role("heading", name="No portal session")).to_be_visible()
    expect(page.get_by_role("navigation", name="Portal")).to_be_hidden()

    page = new_page()
    token = "am_live_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))
    page.goto(f"{herald.base}/portal/#token={token}")
    expect(page.get_by_role("heading", name="This portal link has expired.")).to_be_visible()
    expect(page.get_by_text("Open it again from")).to_be_visible()
    assert "token" not in page.url, "the token must leave the address bar"
    axe_scan(page, "expired")


def test_expiry_warning_and_401_later_in_session(new_page, herald):
    org = herald.new_org("Short Session Co")
    s = herald.session(org["id"], ttl_seconds=60, return_url="https://platform.example/webhooks",
                       theme={"name": "Acme Cloud", "accent_color": "#0f766e"})
    page = new_page()
    page.goto(s["url"])
    ready(page)
    banner = page.locator("#session-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("This session ends in 1 minute")
    expect(page.get_by_role("link", name="← Back to Acme Cloud")).to_have_attribute(
        "href", "https://platform.example/webhooks")
    # The accent comes from the theme, via CSSOM (no inline style attribute).
    accent = page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--accent').trim()")
    assert accent == "#0f766e"
    # A 401 later in the session (the server's answer once the link expires) shows the expiry page,
    # still knowing where "back" leads.
    page.route(re.compile(r"/v1/webhooks\?"), lambda route: route.fulfill(
        status=401, content_type="application/json",
        body='{"success":false,"error":{"code":"UNAUTHORIZED","message":"authentication failed","request_id":"01JTBQH2FZ8K1RXC0WJ4Z9P3VM"}}'))
    go(page, "#/deliveries")
    expect(page.get_by_role("heading", name="This portal link has expired.")).to_be_visible()
    expect(page.get_by_role("link", name="Back to Acme Cloud", exact=True)).to_have_attribute(
        "href", "https://platform.example/webhooks")


# ---------- The main walk ----------

def test_walk_create_test_publish_replay_edit_disable_delete(new_page, herald, receiver, shots_dir, backend_name):
    org = herald.new_org("Walk Co")
    s = herald.session(org["id"], ttl_seconds=3600, return_url="https://platform.example/settings/webhooks",
                       theme={"name": "Acme Cloud", "accent_color": "#2f5bd3"})
    assert s["read_only"] is False
    token = s["token"]
    page = new_page()
    loaded = []
    page.on("requestfinished", lambda req: loaded.append(req))

    # Open the session link: the token leaves the URL, the empty list leads somewhere.
    page.goto(s["url"])
    ready(page)
    assert "token" not in page.url
    assert page.evaluate("sessionStorage.getItem('herald.portal.token')") == token
    expect(page.get_by_role("heading", name="No endpoints yet")).to_be_visible()
    tti = page.evaluate("performance.getEntriesByName('portal:interactive')[0].startTime")
    wire = 0
    for req in loaded:
        sz = req.sizes()
        wire += sz["responseBodySize"] + sz["responseHeadersSize"]
    print(f"\nfirst load: {len(loaded)} requests, {wire} bytes over the wire; interactive after {tti:.0f} ms")
    expect(page.locator("[data-count]")).to_have_text("0 of 50 endpoints")
    axe_scan(page, "endpoints (empty)")
    shot(page, shots_dir, "endpoints-empty", backend_name)

    # Create an endpoint.
    page.locator("[data-empty=endpoints]").get_by_role("link", name="Add endpoint").click()
    url_input = page.get_by_label("Endpoint URL")
    expect(url_input).to_have_value("https://")
    axe_scan(page, "create endpoint")
    shot(page, shots_dir, "create", backend_name)
    hook_url = receiver.url + "/hooks"
    url_input.fill(hook_url)
    page.get_by_label("Description").fill("Billing <b>service</b>")
    expect(page.get_by_text("22 / 200")).to_be_visible()
    page.get_by_role("checkbox", name="wallet.balance_low", exact=True).check()
    page.get_by_role("button", name="Create endpoint").click()

    # The secret, once, in a modal that Esc does not close.
    dialog = page.locator("dialog[data-secret-dialog]")
    expect(dialog).to_be_visible()
    secret = dialog.locator("input[data-secret]").input_value()
    assert len(base64.b64decode(secret, validate=True)) == 32
    expect(dialog.get_by_label("Standard Webhooks form")).to_have_value("whsec_" + secret)
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Copy signing secret").click()
    expect(page.locator("#announce")).to_have_text("signing secret copied to clipboard")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    dialog.get_by_role("button", name="I have stored it").click()
    expect(dialog).to_have_count(0)
    stored = page.evaluate("JSON.stringify(sessionStorage) + JSON.stringify(localStorage) + location.href")
    assert secret not in stored, "the secret must not be kept anywhere"

    # The endpoint's page; untrusted text stays text.
    expect(page.get_by_role("heading", name="Endpoint created")).to_be_visible()
    expect(page.get_by_text("Billing <b>service</b>", exact=True)).to_be_visible()
    assert page.locator("main b").count() == 0
    endpoint_id = page.url.split("#/endpoints/")[1].split("?")[0]
    status, ep, _ = herald.request("GET", f"/v1/webhooks/{endpoint_id}", token=token)
    assert status == 200 and ep["url"] == hook_url and ep["events"] == ["wallet.balance_low"]

    # Send a test: success, and the receiver got it.
    page.locator("[data-action=send-test]").click()
    expect(page.locator("[data-test-outcome]")).to_have_attribute("data-test-outcome", "success")
    expect(page.locator("[data-test-outcome]")).to_contain_text("success")
    wait_until(lambda: receiver.of_type("webhook.test", "/hooks"), what="the test delivery")
    axe_scan(page, "endpoint detail")

    # Publish an event for the organization; it reaches the receiver.
    pub = herald.publish(org["id"], "wallet.balance_low", {"balance": "3.20", "note": "<script>x</script>"})
    assert pub["endpoints"] == 1
    original = wait_until(lambda: receiver.of_type("wallet.balance_low", "/hooks"), what="the published event")[0]
    assert original["json"]["id"] == pub["event_id"]
    wait_until(lambda: herald.request("GET", f"/v1/webhooks/deliveries?endpoint_id={endpoint_id}", token=token)[1]
               ["meta"]["total"] == 2, what="two delivery records")
    page.reload()
    ready(page)
    expect(page.locator("[data-delivery-id]")).to_have_count(2)
    shot(page, shots_dir, "endpoint-detail", backend_name)

    # The deliveries feed shows the attempt (refresh is manual, so pages stay put).
    page.get_by_role("navigation", name="Portal").get_by_role("link", name="Deliveries").click()
    rows = page.locator("table[aria-label='Delivery attempts'] tbody tr")
    for _ in range(50):
        if rows.filter(has_text="wallet.balance_low").count():
            break
        page.get_by_role("button", name="Refresh").click()
        page.wait_for_timeout(200)
    expect(rows.filter(has_text="wallet.balance_low")).to_have_count(1)
    expect(page.locator("[data-total]")).to_have_text("Showing 1–2 of 2")
    axe_scan(page, "deliveries")
    feed_shot = shot(page, shots_dir, "deliveries", backend_name)
    # A filter narrows the feed and lives in the URL; clearing it brings everything back.
    page.get_by_label("Event type").select_option("webhook.test")
    expect(page).to_have_url(re.compile(r"event_type=webhook\.test"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("webhook.test")
    page.get_by_label("Outcome").select_option("dead")
    expect(page.locator("[data-empty=filtered]")).to_be_visible()
    page.get_by_role("link", name="Clear filters").first.click()
    expect(rows).to_have_count(2)

    # The attempt's detail: ids, digest of exactly what the receiver got, headers, payload.
    rows.filter(has_text="wallet.balance_low").get_by_role("link").click()
    expect(page.get_by_role("heading", name=re.compile("wallet.balance_low · attempt 1"))).to_be_visible()
    expect(page.locator("[data-sha]")).to_have_text(hashlib.sha256(original["body"]).hexdigest())
    expect(page.locator("main")).to_contain_text(pub["event_id"])
    expect(page.get_by_role("table", name="Request headers")).to_contain_text("X-AmCore-Signature")
    expect(page.locator("[data-payload]")).to_contain_text('"balance": "3.20"')
    expect(page.locator("[data-payload]")).to_contain_text("<script>x</script>")
    expect(page.locator("[data-excerpt]")).to_contain_text('"ok": true')
    axe_scan(page, "attempt detail")
    shot(page, shots_dir, "attempt", backend_name)

    # Replay it: a new event id, the same data; the receiver gets both.
    page.get_by_role("button", name="Replay…").click()
    rdialog = page.get_by_role("dialog", name="Replay this delivery?")
    expect(rdialog).to_contain_text("new event id")
    rdialog.get_by_label(re.compile("Reason")).fill("browser test replay")
    rdialog.get_by_role("button", name="Replay", exact=True).click()
    replayed = page.locator("[data-replayed]")
    expect(replayed).to_be_visible()
    new_id = replayed.get_attribute("data-replayed")
    assert new_id.startswith("evt_") and new_id != pub["event_id"]
    both = wait_until(lambda: len(receiver.of_type("wallet.balance_low", "/hooks")) >= 2 and
                      receiver.of_type("wallet.balance_low", "/hooks"), what="the replay")
    assert {r["json"]["id"] for r in both} == {pub["event_id"], new_id}
    assert both[0]["json"]["data"] == both[1]["json"]["data"]

    # Edit its events in Settings: Save stays disabled until something changes.
    go(page, f"#/endpoints/{endpoint_id}/settings")
    save_events = page.get_by_role("button", name="Save events")
    expect(save_events).to_be_disabled()
    axe_scan(page, "settings")
    shot(page, shots_dir, "settings", backend_name)
    page.get_by_role("checkbox", name="wallet.balance_zero", exact=True).check()
    expect(save_events).to_be_enabled()
    save_events.click()
    expect(page.get_by_role("status").filter(has_text="Events saved")).to_be_visible()
    _, ep, _ = herald.request("GET", f"/v1/webhooks/{endpoint_id}", token=token)
    assert sorted(ep["events"]) == ["wallet.balance_low", "wallet.balance_zero"]

    # Disable it, after a confirmation.
    page.locator("[data-action=disable]").click()
    ddialog = page.get_by_role("dialog", name=re.compile("Disable 127.0.0.1"))
    expect(ddialog).to_contain_text("waiting for a retry will end as failed")
    ddialog.get_by_role("button", name="Disable endpoint").click()
    expect(page.locator("main [data-action=enable]")).to_be_visible()
    expect(page.get_by_text("Disabled manually").first).to_be_visible()
    _, ep, _ = herald.request("GET", f"/v1/webhooks/{endpoint_id}", token=token)
    assert ep["active"] is False and ep["disabled_reason"] == "manual"

    # Delete it: the dialog asks for the host.
    page.locator("[data-action=delete]").click()
    xdialog = page.get_by_role("dialog", name="Delete this endpoint?")
    confirm = xdialog.get_by_role("button", name="Delete endpoint")
    expect(confirm).to_be_disabled()
    xdialog.get_by_label("Type 127.0.0.1 to confirm").fill("127.0.0.")
    expect(confirm).to_be_disabled()
    xdialog.get_by_label("Type 127.0.0.1 to confirm").fill("127.0.0.1")
    confirm.click()
    expect(page.get_by_role("heading", name="No endpoints yet")).to_be_visible()
    status, _, _ = herald.request("GET", f"/v1/webhooks/{endpoint_id}", token=token)
    assert status == 404

    # The event catalog, grouped and searchable.
    page.get_by_role("link", name="Event catalog").click()
    expect(page.locator("[data-group=wallet]")).to_be_visible()
    expect(page.locator("[data-group=operational]")).to_contain_text("delivery.exhausted")
    axe_scan(page, "catalog")
    shot(page, shots_dir, "catalog", backend_name)
    page.get_by_label("Search event types").fill("zero")
    expect(page.locator("[data-type]")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"#/catalog\?q=zero"))

    # Only when asked (scripts/test-portal): a test run leaves the tracked tree as it was.
    docs_png = os.environ.get("PORTAL_DOCS_SCREENSHOT", "")
    if docs_png and backend_name == "sqlite":
        shutil.copyfile(feed_shot, docs_png)

    # The session token never reaches the server's log.
    assert token not in herald.log_text()


def test_create_form_shows_field_errors_and_keeps_input(new_page, herald):
    org = herald.new_org("Validation Co")
    s = herald.session(org["id"])
    page = new_page()
    page.goto(s["url"])
    ready(page)
    go(page, "#/endpoints/new")
    url_input = page.get_by_label("Endpoint URL")
    url_input.fill("http://example.com/hook")
    expect(page.get_by_text("⚠ Must start with https://")).to_be_visible()
    page.get_by_role("button", name="Create endpoint").click()
    url_error = page.locator(".field-error").filter(has_text="https")
    expect(url_error).to_be_visible()
    expect(page.locator(".field-error").filter(has_text="at least 1 event type")).to_be_visible()
    expect(url_input).to_have_value("http://example.com/hook")
    expect(url_input).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("alert").filter(has_text="Request id")).to_be_visible()
    axe_scan(page, "create (with errors)")


def test_recovery_preview_then_run(new_page, herald, receiver, shots_dir, backend_name):
    org = herald.new_org("Recovery Co")
    s = herald.session(org["id"])
    receiver.flaky_ok = False
    status, ep, _ = herald.request("POST", "/v1/webhooks", {"url": receiver.url + "/flaky", "events": ["campaign.approved"]},
                                   token=s["token"])
    assert status == 201, ep
    pub = herald.publish(org["id"], "campaign.approved", {"campaign": "c-1"})

    def dead():
        _, r, _ = herald.request("GET", f"/v1/webhooks/deliveries?endpoint_id={ep['id']}&outcome=dead", token=s["token"])
        return r["meta"]["total"] >= 1
    wait_until(dead, timeout=30, interval=0.3, what="the delivery to die")
    receiver.flaky_ok = True

    page = new_page()
    page.goto(s["url"])
    ready(page)
    expect(page.get_by_text("Failing since")).to_be_visible()
    go(page, f"#/endpoints/{ep['id']}/recover")
    expect(page.get_by_role("heading", name="Recover failed deliveries")).to_be_visible()
    axe_scan(page, "recovery")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("[data-preview]")).to_have_attribute("data-preview", "1")
    expect(page.get_by_role("heading", name="1 event matches")).to_be_visible()
    shot(page, shots_dir, "recovery", backend_name)
    before = len(receiver.of_type("campaign.approved", "/flaky"))
    page.get_by_role("button", name="Recover 1 event").click()
    expect(page.locator("[data-recovery-status]")).to_have_attribute("data-recovery-status", "done", timeout=20000)
    got = wait_until(lambda: receiver.of_type("campaign.approved", "/flaky")[before:], what="the recovered delivery")
    assert got[0]["json"]["id"] == pub["event_id"], "recovery keeps the original event id"


def test_read_only_session_shows_no_changing_control(new_page, herald, receiver):
    org = herald.new_org("Read Only Co")
    rw = herald.session(org["id"])
    status, ep, _ = herald.request("POST", "/v1/webhooks", {"url": receiver.url + "/ro", "events": ["lookup.completed"]},
                                   token=rw["token"])
    assert status == 201
    status, test, _ = herald.request("POST", f"/v1/webhooks/{ep['id']}/test", token=rw["token"])
    assert status == 200 and test["outcome"] == "success"
    ro = herald.session(org["id"], read_only=True)
    assert ro["read_only"] is True

    page = new_page()
    page.goto(ro["url"])
    ready(page)
    expect(page.locator("#ro-label")).to_have_text("Read-only")
    expect(page.locator("[data-endpoint-id]")).to_have_count(1)
    assert_no_write_controls(page, "endpoints")
    pages = [
        (f"#/endpoints/{ep['id']}", lambda: expect(page.get_by_role("heading", name="Recent attempts")).to_be_visible()),
        (f"#/endpoints/{ep['id']}/settings", lambda: expect(page.get_by_role("heading", name="Read-only session")).to_be_visible()),
        (f"#/endpoints/{ep['id']}/recover", lambda: expect(page.get_by_role("heading", name="Read-only session")).to_be_visible()),
        ("#/endpoints/new", lambda: expect(page.get_by_role("heading", name="Read-only session")).to_be_visible()),
        ("#/deliveries", lambda: expect(page.locator("[data-delivery-id]")).to_have_count(1)),
        (f"#/deliveries/{test['delivery_id']}", lambda: expect(page.get_by_role("heading", name="Request", exact=True)).to_be_visible()),
        ("#/catalog", lambda: expect(page.locator("[data-group=wallet]")).to_be_visible()),
    ]
    for hash_, loaded in pages:
        go(page, hash_)
        loaded()
        assert_no_write_controls(page, hash_)
    # The same pages in a read-write session do show those controls (so the check above can fail).
    page2 = new_page()
    page2.goto(rw["url"])
    ready(page2)
    go(page2, f"#/deliveries/{test['delivery_id']}")
    expect(page2.get_by_role("button", name="Replay…")).to_be_visible()
    # Writes with a read-only token are refused by the server too.
    status, body, _ = herald.request("DELETE", f"/v1/webhooks/{ep['id']}", token=ro["token"])
    assert status == 403 and body["error"]["code"] == "FORBIDDEN"


# ---------- Review regressions: hostile text, odd addresses, a second link, embedding ----------

HOSTILE = '<img src=x id=pwn onerror="window.PWN=1"><b id=pwnb>b</b>'


def assert_not_injected(page: Page, where: str):
    found = page.evaluate("() => ({pwn: window.PWN || 0, el: !!document.querySelector('#pwn, #pwnb, img[src=\"x\"]')})")
    assert found == {"pwn": 0, "el": False}, f"markup from data became elements on {where}: {found}"


def test_hostile_text_stays_text_and_urls_show_as_stored(new_page, herald):
    org = herald.new_org("Org " + HOSTILE)
    s = herald.session(org["id"], return_url="https://platform.example/back",
                       theme={"name": "Plat " + HOSTILE, "accent_color": "#123456"})
    # The parser would lower-case and punycode these hosts; the portal must show what was stored.
    urls = ["https://Example.COM/Hooks?a=<b>", "https://b\u00fccher.example/x"]
    ids = []
    for url in urls:
        status, ep, _ = herald.request("POST", "/v1/webhooks", {"url": url, "description": HOSTILE,
                                                               "events": ["lookup.completed"]}, token=s["token"])
        assert status == 201, ep
        ids.append(ep["id"])
    page = new_page()
    page.goto(s["url"])
    ready(page)
    expect(page.locator("[data-endpoint-id]")).to_have_count(2)
    assert_not_injected(page, "endpoints")
    for ep_id, url in zip(ids, urls):
        expect(page.locator(f"[data-endpoint-id='{ep_id}'] a[data-rowlink]")).to_have_text(url)
    for ep_id, url in zip(ids, urls):
        go(page, f"#/endpoints/{ep_id}")
        expect(page.locator("main h1")).to_have_text(url)
        expect(page.locator("main .page-head .sub")).to_contain_text(HOSTILE)
        assert_not_injected(page, f"endpoint {url}")
    expect(page.locator("#brand-name")).to_have_text("Plat " + HOSTILE)
    expect(page.locator("#brand-org")).to_have_text("Org " + HOSTILE)
    # "Back" leaves an embedding frame for the whole window: the platform's page would refuse a frame.
    expect(page.locator("#back-link")).to_have_attribute("target", "_top")


def test_malformed_escape_in_the_address_is_not_found(new_page, herald):
    org = herald.new_org("Odd Address Co")
    s = herald.session(org["id"])
    page = new_page()  # fails the test on an uncaught exception ("URI malformed")
    page.goto(s["url"])
    ready(page)
    go(page, "#/endpoints/%E0%A4%A")
    expect(page.get_by_role("heading", name="Endpoint not found")).to_be_visible()
    go(page, "#/deliveries/%")
    expect(page.get_by_role("heading", name="Delivery not found")).to_be_visible()


def test_a_second_link_in_the_same_tab_takes_its_token(new_page, herald):
    org = herald.new_org("Second Link Co")
    ro = herald.session(org["id"], read_only=True)
    rw = herald.session(org["id"], return_url="https://platform.example/back")
    page = new_page()
    page.goto(ro["url"])
    ready(page)
    expect(page.locator("#ro-label")).to_be_visible()
    # Only the fragment differs, so the browser does not load the page again (an iframe whose src
    # the platform sets to a fresh link behaves the same).
    page.goto(rw["url"])
    expect(page.locator("#ro-label")).to_be_hidden()
    expect(page.get_by_role("link", name="+ Add endpoint").first).to_be_visible()
    assert "token" not in page.url, f"the new token stayed in the address bar: {page.url}"
    assert page.evaluate("sessionStorage.getItem('herald.portal.token')") == rw["token"]
    # The same after the first session has expired (a 401 page), which is when platforms re-mint.
    page.evaluate("sessionStorage.setItem('herald.portal.token', 'am_live_' + 'x'.repeat(40))")
    page.reload()
    expect(page.get_by_role("heading", name="This portal link has expired.")).to_be_visible()
    page.goto(rw["url"])
    ready(page)
    expect(page.get_by_role("link", name="+ Add endpoint").first).to_be_visible()
    assert "token" not in page.url
    expect(page.locator("#back-link")).to_have_attribute("target", "_top")


# ---------- Stats, custom headers, rotation with overlap, signing keys, client certificates ----------

def _last(receiver, event_type: str, path: str) -> dict:
    got = receiver.of_type(event_type, path)
    assert got, f"no {event_type} at {path}"
    return got[-1]


def test_headers_stats_rotation_keys_and_certificate(new_page, herald, receiver, ca, shots_dir, backend_name):
    import datetime
    org = herald.new_org("Advanced Co")
    s = herald.session(org["id"])
    token = s["token"]
    page = new_page()
    page.goto(s["url"])
    ready(page)

    # Create with a custom header in the Advanced section.
    go(page, "#/endpoints/new")
    page.get_by_label("Endpoint URL").fill(receiver.url + "/adv")
    page.get_by_role("checkbox", name="wallet.balance_low", exact=True).check()
    adv = page.locator("details.advanced")
    adv.locator(":scope > summary").click()
    adv.get_by_role("button", name="+ Add header").click()
    adv.locator("[data-header-name]").nth(0).fill("X-Api-Key")
    adv.locator("[data-header-value]").nth(0).fill("k-secret-1")
    adv.get_by_role("button", name="+ Add header").click()
    adv.locator("[data-header-name]").nth(1).fill("X-Tenant")
    adv.locator("[data-header-value]").nth(1).fill("blue")
    axe_scan(page, "create (advanced open)")
    shot(page, shots_dir, "create-advanced", backend_name)
    page.get_by_role("button", name="Create endpoint").click()
    dialog = page.locator("dialog[data-secret-dialog]")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="I have stored it").click()
    expect(page.get_by_role("heading", name="Endpoint created")).to_be_visible()
    endpoint_id = page.url.split("#/endpoints/")[1].split("?")[0]

    # The overview lists the header names, never a value; stats start empty.
    names = page.locator("[data-header-names]")
    expect(names).to_contain_text("X-Api-Key")
    expect(names).to_contain_text("X-Tenant")
    assert "k-secret-1" not in page.content()
    expect(page.locator("[data-stats-empty]")).to_be_visible()

    # A test send carries the header with its value; the stats card counts it.
    page.locator("[data-action=send-test]").click()
    expect(page.locator("[data-test-outcome]")).to_have_attribute("data-test-outcome", "success")
    got = _last(receiver, "webhook.test", "/adv")
    assert got["headers"].get("x-api-key") == "k-secret-1" and got["headers"].get("x-tenant") == "blue"
    expect(page.locator("[data-stat=success]")).to_contain_text("1 delivered")
    expect(page.locator("[data-latency]")).to_contain_text("p50 ")
    # The window switch lives in the URL and survives a reload.
    page.get_by_role("button", name="1 h", exact=True).click()
    expect(page).to_have_url(re.compile(r"window=1h"))
    expect(page.get_by_role("button", name="1 h", exact=True)).to_have_attribute("aria-pressed", "true")
    expect(page.locator("[data-stat=success]")).to_contain_text("1 delivered")
    page.reload()
    ready(page)
    expect(page.get_by_role("button", name="1 h", exact=True)).to_have_attribute("aria-pressed", "true")
    page.get_by_role("button", name="7 d", exact=True).click()
    expect(page).to_have_url(re.compile(r"window=7d"))
    expect(page.locator("[data-stat=success]")).to_contain_text("1 delivered")
    expect(page.locator("[data-stat=dead]")).to_contain_text("0 failed")
    axe_scan(page, "endpoint overview (stats)")
    shot(page, shots_dir, "endpoint-stats", backend_name)

    # The list shows each endpoint's last 24 h, loaded after the table.
    go(page, "#/endpoints")
    expect(page.locator(f"[data-endpoint-id='{endpoint_id}'] [data-ep-stats]")).to_contain_text("1 delivered · 0 failed")
    expect(page.locator(f"[data-endpoint-id='{endpoint_id}'] [data-ep-stats]")).to_contain_text("Last success")
    shot(page, shots_dir, "endpoints-stats", backend_name)

    # Settings: editing one header keeps the other's hidden value.
    go(page, f"#/endpoints/{endpoint_id}/settings")
    hform = page.locator("form[data-form=headers]")
    expect(hform.locator("[data-header-name]")).to_have_count(2)
    expect(hform.get_by_text("Value hidden; leave as is to keep it").first).to_be_visible()
    save = hform.get_by_role("button", name="Save headers")
    expect(save).to_be_disabled()
    axe_scan(page, "settings (advanced)")
    hform.scroll_into_view_if_needed()
    shot(page, shots_dir, "settings-advanced", backend_name)
    hform.locator("[data-header-row='X-Tenant'] [data-header-value]").fill("green")
    expect(save).to_be_enabled()
    save.click()
    expect(page.get_by_role("status").filter(has_text="Headers saved")).to_be_visible()
    _, ep, _ = herald.request("GET", f"/v1/webhooks/{endpoint_id}", token=token)
    assert ep["headers"] == {"X-Api-Key": "<redacted>", "X-Tenant": "<redacted>"}, ep["headers"]
    status, t, _ = herald.request("POST", f"/v1/webhooks/{endpoint_id}/test", token=token)
    assert status == 200 and t["outcome"] == "success", t
    got = _last(receiver, "webhook.test", "/adv")
    assert got["headers"].get("x-api-key") == "k-secret-1" and got["headers"].get("x-tenant") == "green"

    # A 422 on headers shows under the section.
    hform = page.locator("form[data-form=headers]")
    hform.get_by_role("button", name="+ Add header").click()
    hform.locator("[data-header-name]").nth(2).fill("Content-Type")
    hform.locator("[data-header-value]").nth(2).fill("text/plain")
    hform.get_by_role("button", name="Save headers").click()
    expect(hform.locator(".field-error")).to_contain_text("Content-Type")
    hform.get_by_role("button", name="Remove header Content-Type").click()

    # Rotate with 24 h of overlap: the next delivery carries two v1 signatures.
    page.locator("[data-action=rotate]").click()
    rdialog = page.get_by_role("dialog", name="Rotate the signing secret?")
    expect(rdialog.get_by_label("24 hours (recommended)")).to_be_checked()
    expect(rdialog.locator("[data-grace-warning]")).to_be_hidden()
    rdialog.get_by_label("Immediately (no overlap)").check()
    expect(rdialog.locator("[data-grace-warning]")).to_contain_text("Receivers that have not switched will break")
    axe_scan(page, "rotate dialog")
    shot(page, shots_dir, "rotate-dialog", backend_name)
    rdialog.get_by_label("24 hours (recommended)").check()
    expect(rdialog.locator("[data-grace-warning]")).to_be_hidden()
    rdialog.get_by_role("button", name="Rotate secret").click()
    sdialog = page.locator("dialog[data-secret-dialog]")
    expect(sdialog).to_be_visible()
    until = sdialog.locator("[data-previous-valid-until]").get_attribute("data-previous-valid-until")
    left = datetime.datetime.fromisoformat(until.replace("Z", "+00:00")) - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(hours=23) < left <= datetime.timedelta(hours=24, minutes=1), until
    expect(sdialog).to_contain_text("The previous secret also signs deliveries until")
    sdialog.get_by_role("button", name="I have stored it").click()
    expect(sdialog).to_have_count(0)
    status, t, _ = herald.request("POST", f"/v1/webhooks/{endpoint_id}/test", token=token)
    assert status == 200 and t["outcome"] == "success", t
    sig = _last(receiver, "webhook.test", "/adv")["headers"]["webhook-signature"]
    assert len([e for e in sig.split(" ") if e.startswith("v1,")]) == 2, sig

    # A client certificate, pasted (certificate) and read from a file (key), expiring in 10 days.
    leaf = ca.issue_cert("client.example", common_name="herald-client", organization_name="Acme Test",
                         not_after=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=10))
    cform = page.locator("form[data-form=certificate]")
    csave = cform.get_by_role("button", name="Save certificate")
    expect(csave).to_be_disabled()
    cform.get_by_label("Certificate (PEM)").fill(leaf.cert_chain_pems[0].bytes().decode())
    cform.locator("input[type=file]").nth(1).set_input_files(
        files=[{"name": "client.key", "mimeType": "text/plain", "buffer": leaf.private_key_pem.bytes()}])
    expect(cform.get_by_label("Private key (PEM)")).to_have_value(re.compile("BEGIN EC PRIVATE KEY"))
    csave.click()
    expect(page.get_by_role("status").filter(has_text="Client certificate saved")).to_be_visible()
    _, ep, _ = herald.request("GET", f"/v1/webhooks/{endpoint_id}", token=token)
    assert ep["client_certificate"] and "CN=herald-client" in ep["client_certificate"]["subject"], ep
    go(page, f"#/endpoints/{endpoint_id}")
    expect(page.locator("[data-cert] [data-cert-subject]")).to_contain_text("CN=herald-client")
    expect(page.locator("[data-cert]")).to_contain_text("Expires in 10 days")
    page.locator("[data-cert]").scroll_into_view_if_needed()
    page.evaluate("document.querySelectorAll('.toast').forEach(t => t.remove())")
    shot(page, shots_dir, "endpoint-cert", backend_name)

    # Read-only: the new information is there, none of the new controls.
    ro = herald.session(org["id"], read_only=True)
    rpage = new_page()
    rpage.goto(ro["url"])
    ready(rpage)
    expect(rpage.locator("[data-ep-stats]")).to_contain_text("delivered")
    go(rpage, f"#/endpoints/{endpoint_id}")
    expect(rpage.locator("[data-header-names]")).to_contain_text("X-Api-Key")
    expect(rpage.locator("[data-cert-subject]")).to_contain_text("CN=herald-client")
    expect(rpage.locator("[data-stat=success]")).to_be_visible()
    assert_no_write_controls(rpage, "endpoint overview")
    for ctl in ("[data-action=add-header]", "[data-action=remove-cert]", "[data-action=rotate]", "textarea", "input[type=file]"):
        assert rpage.locator(ctl).count() == 0, f"read-only overview shows {ctl}"
    axe_scan(rpage, "endpoint overview (read-only)")

    # Remove the certificate, after a confirmation.
    go(page, f"#/endpoints/{endpoint_id}/settings")
    page.locator("[data-action=remove-cert]").click()
    xdialog = page.get_by_role("dialog", name="Remove the client certificate?")
    expect(xdialog).to_contain_text("CN=herald-client")
    xdialog.get_by_role("button", name="Remove certificate").click()
    expect(page.get_by_role("status").filter(has_text="Client certificate removed")).to_be_visible()
    _, ep, _ = herald.request("GET", f"/v1/webhooks/{endpoint_id}", token=token)
    assert ep["client_certificate"] is None

    # The catalog's signature panel lists the organization's public keys.
    status, keys, _ = herald.request("GET", "/v1/webhook-keys", token=token)
    assert status == 200 and keys["keys"], keys
    k = keys["keys"][0]
    go(page, "#/catalog")
    box = page.locator(f"[data-key='{k['kid']}']")
    expect(box.locator("[data-kid]")).to_have_text(k["kid"])
    expect(box.locator("[data-key-x]")).to_have_text(k["x"])
    expect(page.locator("main")).to_contain_text("v1a")
    box.get_by_role("button", name="Copy public key").click()
    assert page.evaluate("navigator.clipboard.readText()") == k["x"]
    axe_scan(page, "catalog (signing keys)")
    shot(page, shots_dir, "catalog-keys", backend_name)
    go(rpage, "#/catalog")
    expect(rpage.locator("[data-kid]")).to_have_text(k["kid"])
    assert_no_write_controls(rpage, "catalog")

    # Stats that fail to load degrade to a plain note (and a retry on the overview).
    rpage.route(re.compile(r"/stats\?"), lambda route: route.fulfill(
        status=500, content_type="application/json",
        body='{"success":false,"error":{"code":"INTERNAL","message":"boom","request_id":"r-1"}}'))
    go(rpage, "#/endpoints")
    expect(rpage.locator("[data-ep-stats]")).to_have_text("Stats unavailable")
    go(rpage, f"#/endpoints/{endpoint_id}")
    expect(rpage.locator("[data-stats-error]")).to_be_visible()
    expect(rpage.locator("[data-header-names]")).to_contain_text("X-Api-Key")


# ---------- The event catalog, and a payload filter tried before it is saved ----------

def test_catalog_shows_schemas_examples_and_search(new_page, herald, shots_dir, backend_name):
    org = herald.new_org("Catalog Co")
    s = herald.session(org["id"])
    status, listed, _ = herald.request("GET", "/v1/event-types", token=s["token"])
    assert status == 200, listed
    types = {t["name"]: t for t in listed["data"]}
    # The server read the test's catalog file: a schema and an example where it gives them.
    low = types["wallet.balance_low"]
    assert low["schema"]["required"] == ["balance"] and low["example"]["currency"] == "EUR", low
    assert types["campaign.shared"]["deprecated"] is True
    assert types["lookup.completed"]["schema"] is None and types["lookup.completed"]["example"] is None
    assert "wallet.balance_low" in CATALOG.read_text()

    page = new_page()
    page.goto(s["url"])
    ready(page)
    page.get_by_role("navigation", name="Portal").get_by_role("link", name="Event catalog").click()
    entries = page.locator("details[data-type]")
    expect(entries).to_have_count(len(types))
    expect(page.locator("[data-catalog-count]")).to_have_text(f"{len(types)} event types")
    expect(page.locator("[data-group=wallet]").get_by_role("heading", level=2)).to_have_text("wallet.*")
    expect(page.locator("[data-group=operational]")).to_contain_text("endpoint.disabled")

    # A type with a schema: its fields as a tree, the schema itself, the example with a copy button.
    entry = page.locator("details[data-type='wallet.balance_low']")
    expect(entry.locator(":scope > summary")).to_contain_text(low["description"])
    expect(entry.locator(":scope > summary")).to_contain_text("Schema")
    entry.locator(":scope > summary").click()
    expect(page).to_have_url(re.compile(r"#/catalog\?type=wallet\.balance_low$"))
    expect(entry.locator("[data-field=balance]")).to_contain_text("string")
    expect(entry.locator("[data-field=balance]")).to_contain_text("required")
    expect(entry.locator("[data-field=balance]")).to_contain_text("The balance, in the wallet's currency.")
    expect(entry.locator("[data-field=currency]")).to_contain_text("optional")
    expect(entry.locator("[data-field=currency]")).to_contain_text("length 3")
    assert json.loads(entry.locator("[data-example]").inner_text()) == low["example"]
    entry.get_by_role("button", name="Copy example of wallet.balance_low").click()
    expect(page.locator("#announce")).to_have_text("example of wallet.balance_low copied to clipboard")
    assert json.loads(page.evaluate("navigator.clipboard.readText()")) == low["example"]
    raw = entry.locator("details[data-schema]")
    expect(raw.locator("pre")).to_be_hidden()
    raw.locator(":scope > summary").click()
    assert json.loads(raw.locator("pre").inner_text()) == low["schema"]

    # Nested fields; a type without a schema says so; a deprecated type is marked.
    camp = page.locator("details[data-type='campaign.approved']")
    camp.locator(":scope > summary").click()
    expect(camp.locator("[data-field=limits] [data-field=daily]")).to_contain_text("integer")
    expect(camp.locator("[data-field=limits] [data-field=channels]")).to_contain_text('array of string')
    expect(camp.locator("[data-field=limits] [data-field=channels]")).to_contain_text('one of "sms", "mms"')
    lookup = page.locator("details[data-type='lookup.completed']")
    expect(lookup.locator(":scope > summary")).to_contain_text("No schema")
    lookup.locator(":scope > summary").click()
    expect(lookup.locator("[data-no-schema]")).to_contain_text("no schema for this type")
    expect(lookup.locator("[data-no-example]")).to_be_visible()
    shared = page.locator("details[data-type='campaign.shared']")
    expect(shared.locator(":scope > summary")).to_contain_text("Deprecated")
    expect(page.locator("details[data-type] summary").filter(has_text="Deprecated")).to_have_count(1)
    entry.evaluate("e => e.scrollIntoView({block: 'start'})")
    axe_scan(page, "catalog (types open)")
    shot(page, shots_dir, "catalog-type", backend_name)

    # The keyboard opens and closes a type.
    brand = page.locator("details[data-type='brand.vetted']")
    brand.locator(":scope > summary").focus()
    page.keyboard.press("Enter")
    expect(brand).to_have_attribute("open", "")
    expect(brand.locator("[data-no-schema]")).to_be_visible()
    page.keyboard.press("Enter")
    expect(brand.locator("[data-no-schema]")).to_be_hidden()

    # Search narrows the list, lives in the address with the open type, and survives a reload.
    search = page.get_by_label("Search event types")
    search.fill("balance")
    expect(entries).to_have_count(2)
    expect(page.locator("[data-catalog-count]")).to_have_text(f"2 types of {len(types)} match")
    expect(page).to_have_url(re.compile(r"q=balance"))
    page.reload()
    ready(page)
    expect(entries).to_have_count(2)
    expect(page.get_by_label("Search event types")).to_have_value("balance")
    search = page.get_by_label("Search event types")
    search.fill("no such thing")
    expect(page.locator("[data-empty=catalog]")).to_contain_text("No event type matches")
    page.get_by_role("button", name="Clear search").click()
    expect(entries).to_have_count(len(types))
    go(page, "#/catalog?type=campaign.approved")
    page.reload()
    ready(page)
    expect(page.locator("details[data-type='campaign.approved']")).to_have_attribute("open", "")
    expect(page.locator("details[data-type][open]")).to_have_count(1)

    # 360 px wide, dark: the open type and its schema fit the width.
    for scheme in ("dark", "light"):
        small = new_page(viewport={"width": 360, "height": 780}, color_scheme=scheme)
        small.goto(s["url"])
        ready(small)
        go(small, "#/catalog?type=campaign.approved")
        camp = small.locator("details[data-type='campaign.approved']")
        expect(camp).to_have_attribute("open", "")
        camp.locator("details[data-schema] summary").click()
        camp.scroll_into_view_if_needed()
        wide = small.evaluate("document.documentElement.scrollWidth")
        assert wide <= 360, f"the catalog is {wide} px wide at 360 px ({scheme})"
        axe_scan(small, f"catalog 360 px {scheme}")
        shot(small, shots_dir, f"catalog-360-{scheme}", backend_name)


def test_filter_is_tried_before_saving_then_saved_and_cleared(new_page, herald, receiver, shots_dir, backend_name):
    org = herald.new_org("Filter Co")
    s = herald.session(org["id"])
    token = s["token"]
    _, listed, _ = herald.request("GET", "/v1/event-types", token=token)
    example = next(t for t in listed["data"] if t["name"] == "wallet.balance_low")["example"]
    page = new_page()
    page.goto(s["url"])
    ready(page)
    go(page, "#/endpoints/new")
    page.get_by_label("Endpoint URL").fill(receiver.url + "/filtered")
    page.get_by_role("checkbox", name="wallet.balance_low", exact=True).check()

    # The picker's catalog link opens a new tab that keeps the session (the form stays as it is).
    with page.context.expect_page() as opened:
        page.locator("[data-catalog-link]").click()
    catalog_tab = opened.value
    expect(catalog_tab.locator("details[data-type='wallet.balance_low']")).to_be_visible()
    catalog_tab.close()
    expect(page.get_by_label("Endpoint URL")).to_have_value(receiver.url + "/filtered")
    # Embedded in a platform's page, the frame's storage is partitioned and a new tab gets none of
    # it (simulated: a tab with an opener starts empty); the tab takes the token from its opener.
    page.context.add_init_script("if (window.opener) { sessionStorage.clear(); }")
    page.locator("details.advanced").locator(":scope > summary").click()
    with page.context.expect_page() as opened:
        page.get_by_role("link", name="See wallet.balance_low in the catalog").click()
    catalog_tab = opened.value
    expect(catalog_tab.locator("details[data-type='wallet.balance_low']")).to_have_attribute("open", "")
    catalog_tab.close()
    page.locator("details.advanced").locator(":scope > summary").click()

    # The sample event is the selected type's example from the catalog.
    adv = page.locator("details.advanced")
    adv.locator(":scope > summary").click()
    box = page.get_by_label("Payload filter")
    sample_type = page.get_by_label("Sample event type")
    sample = page.get_by_label("Sample event data")
    expect(sample_type).to_have_value("wallet.balance_low")
    assert json.loads(sample.input_value()) == example
    verdict = page.locator("[data-verdict]")
    try_it = page.get_by_role("button", name="Try the filter")

    # A matching filter, then a non-matching one, then a malformed one: each verdict from the server.
    box.fill('{"data": {"currency": "EUR"}}')
    try_it.click()
    expect(verdict).to_have_attribute("data-verdict", "match")
    expect(verdict).to_contain_text("Matches")
    axe_scan(page, "create (filter tried)")
    box.evaluate("e => e.closest('.field').scrollIntoView({block: 'start'})")
    shot(page, shots_dir, "filter-match", backend_name)
    box.fill('{"data": {"currency": "USD"}}')
    expect(verdict).to_have_count(0)
    try_it.click()
    expect(verdict).to_have_attribute("data-verdict", "no-match")
    expect(verdict).to_contain_text("Does not match")
    # An edited sample is what gets tried.
    sample.fill('{"balance": "1.00", "currency": "USD"}')
    try_it.click()
    expect(verdict).to_have_attribute("data-verdict", "match")
    page.get_by_role("button", name="Use the catalog example").click()
    assert json.loads(sample.input_value()) == example
    box.fill('{"data": {"balance": {"$between": [1, 2]}}}')
    try_it.click()
    expect(verdict).to_have_attribute("data-verdict", "invalid")
    filter_error = adv.locator(".field-error").filter(has=page.locator("[data-pointer]"))
    expect(filter_error.locator("[data-pointer]")).to_have_text("/data/balance/$between")
    expect(filter_error).to_contain_text("unknown operator $between")
    expect(box).to_have_attribute("aria-invalid", "true")
    box.evaluate("e => e.closest('.field').scrollIntoView({block: 'start'})")
    shot(page, shots_dir, "filter-invalid", backend_name)
    # Not JSON at all is caught before any request.
    box.fill('{"data": ')
    try_it.click()
    expect(adv.locator(".field-error").filter(has_text="Not valid JSON")).to_be_visible()
    # Nothing was saved by trying.
    _, eps, _ = herald.request("GET", "/v1/webhooks", token=token)
    assert eps["meta"]["total"] == 0, eps

    # Saving a malformed filter is the server's 422, shown with its pointer; nothing is created.
    box.fill('{"data": {}}')
    page.get_by_role("button", name="Create endpoint").click()
    expect(adv.locator("[data-pointer]")).to_have_text("/data")
    expect(adv.locator(".field-error").filter(has_text="must not be empty")).to_be_visible()
    expect(page.get_by_role("alert").filter(has_text="Some fields need attention")).to_be_visible()
    _, eps, _ = herald.request("GET", "/v1/webhooks", token=token)
    assert eps["meta"]["total"] == 0, eps

    # A good filter is saved with the endpoint, shown on it after a reload, and returned by the API.
    wanted = {"data": {"currency": {"$in": ["EUR", "GBP"]}}}
    box.fill(json.dumps(wanted))
    page.get_by_role("button", name="Create endpoint").click()
    dialog = page.locator("dialog[data-secret-dialog]")
    dialog.get_by_role("button", name="I have stored it").click()
    expect(page.get_by_role("heading", name="Endpoint created")).to_be_visible()
    endpoint_id = page.url.split("#/endpoints/")[1].split("?")[0]
    page.reload()
    ready(page)
    assert json.loads(page.locator("[data-filter] pre").inner_text()) == wanted
    _, ep, _ = herald.request("GET", f"/v1/webhooks/{endpoint_id}", token=token)
    assert ep["filter"] == wanted, ep
    # And fan-out honours it.
    assert herald.publish(org["id"], "wallet.balance_low", {"balance": "1.00", "currency": "USD"})["endpoints"] == 0
    assert herald.publish(org["id"], "wallet.balance_low", {"balance": "1.00", "currency": "GBP"})["endpoints"] == 1

    # Settings: the stored filter, tried and changed, then removed.
    go(page, f"#/endpoints/{endpoint_id}/settings")
    form = page.locator("form[data-form=filter]")
    box = form.get_by_label("Payload filter")
    save = form.get_by_role("button", name="Save filter")
    assert json.loads(box.input_value()) == wanted
    expect(save).to_be_disabled()
    expect(form.get_by_label("Sample event type")).to_have_value("wallet.balance_low")
    form.get_by_role("button", name="Try the filter").click()
    expect(form.locator("[data-verdict]")).to_have_attribute("data-verdict", "match")
    changed = {"data": {"currency": "USD"}}
    box.fill(json.dumps(changed))
    expect(save).to_be_enabled()
    form.get_by_role("button", name="Try the filter").click()
    expect(form.locator("[data-verdict]")).to_have_attribute("data-verdict", "no-match")
    axe_scan(page, "settings (filter)")
    form.scroll_into_view_if_needed()
    shot(page, shots_dir, "settings-filter", backend_name)
    box.fill('{"data": {"balance": {"$lt": true}}}')
    save.click()
    expect(form.locator("[data-pointer]")).to_have_text("/data/balance/$lt")
    _, ep, _ = herald.request("GET", f"/v1/webhooks/{endpoint_id}", token=token)
    assert ep["filter"] == wanted, "a refused filter must not replace the stored one"
    box.fill(json.dumps(changed))
    save.click()
    expect(page.get_by_role("status").filter(has_text="Filter saved")).to_be_visible()
    page.reload()
    ready(page)
    assert json.loads(page.locator("form[data-form=filter]").get_by_label("Payload filter").input_value()) == changed
    _, ep, _ = herald.request("GET", f"/v1/webhooks/{endpoint_id}", token=token)
    assert ep["filter"] == changed, ep
    form = page.locator("form[data-form=filter]")
    form.get_by_label("Payload filter").fill("")
    form.get_by_role("button", name="Save filter").click()
    expect(page.get_by_role("status").filter(has_text="Filter removed")).to_be_visible()
    _, ep, _ = herald.request("GET", f"/v1/webhooks/{endpoint_id}", token=token)
    assert ep["filter"] is None, ep
    go(page, f"#/endpoints/{endpoint_id}")
    expect(page.locator("[data-filter]")).to_contain_text("None: every subscribed event")

    # 360 px, dark: the filter section fits.
    small = new_page(viewport={"width": 360, "height": 780}, color_scheme="dark")
    small.goto(s["url"])
    ready(small)
    go(small, f"#/endpoints/{endpoint_id}/settings")
    sform = small.locator("form[data-form=filter]")
    sform.get_by_label("Payload filter").fill(json.dumps(changed))
    sform.get_by_role("button", name="Try the filter").click()
    expect(sform.locator("[data-verdict]")).to_have_attribute("data-verdict", "no-match")
    sform.locator("details.filter-guide > summary").click()
    sform.scroll_into_view_if_needed()
    wide = small.evaluate("document.documentElement.scrollWidth")
    assert wide <= 360, f"settings are {wide} px wide at 360 px"
    axe_scan(small, "settings (filter) 360 px dark")
    shot(small, shots_dir, "settings-filter-360-dark", backend_name)


def _saved_events(herald, token: str, endpoint_id: str) -> list:
    status, ep, _ = herald.request("GET", f"/v1/webhooks/{endpoint_id}", token=token)
    assert status == 200
    return ep["events"]


def _save_events(page: Page, herald, token: str, endpoint_id: str) -> list:
    """Saves the picker and returns the stored events once they have changed (an earlier save's
    "Events saved" status may still be showing) and the settings are drawn again from them."""
    before = _saved_events(herald, token, endpoint_id)
    save = page.get_by_role("button", name="Save events")
    save.click()
    events = wait_until(lambda: (lambda now: now != before and now)(_saved_events(herald, token, endpoint_id)),
                        what="the saved events")
    # The button of the new drawing is disabled and was never busy.
    expect(save).not_to_have_attribute("aria-busy", "true")
    expect(save).to_be_disabled()
    return events


def test_picker_writes_wildcards_and_opens_them_checked(new_page, herald, receiver, shots_dir, backend_name):
    org = herald.new_org("Wildcard Co")
    s = herald.session(org["id"])
    token = s["token"]
    page = new_page()
    page.goto(s["url"])
    ready(page)

    # The wallet group's box writes `wallet.*`, and says that later types are included.
    go(page, "#/endpoints/new")
    page.get_by_label("Endpoint URL").fill(receiver.url + "/wild")
    wallet = page.locator("[data-group=wallet]")
    wallet_box = page.get_by_role("checkbox", name=re.compile(r"^All wallet events"))
    wallet_box.check()
    expect(page.get_by_role("checkbox", name="wallet.balance_low", exact=True)).to_be_checked()
    expect(wallet.locator("[data-wildcard-note]")).to_have_text("All wallet.* events, including types added later")
    page.get_by_role("button", name="Create endpoint").click()
    page.locator("dialog[data-secret-dialog]").get_by_role("button", name="I have stored it").click()
    expect(page.get_by_role("heading", name="Endpoint created")).to_be_visible()
    endpoint_id = page.url.split("#/endpoints/")[1].split("?")[0]
    assert _saved_events(herald, token, endpoint_id) == ["wallet.*"]
    expect(page.locator("[data-wildcard='wallet.*']")).to_contain_text("incl. future types")

    # Reloaded, the settings show the group checked; unchecking one type spells out the rest.
    go(page, f"#/endpoints/{endpoint_id}/settings")
    page.reload()
    ready(page)
    save_events = page.get_by_role("button", name="Save events")
    expect(wallet_box).to_be_checked()
    expect(page.get_by_role("checkbox", name="wallet.balance_zero", exact=True)).to_be_checked()
    expect(wallet.locator("[data-wildcard-note]")).to_be_visible()
    all_events = page.get_by_role("checkbox", name="All events", exact=True)
    expect(all_events).not_to_be_checked()
    expect(save_events).to_be_disabled()
    page.get_by_role("checkbox", name="wallet.balance_zero", exact=True).uncheck()
    expect(wallet_box).not_to_be_checked()
    expect(wallet.locator("[data-wildcard-note]")).to_be_hidden()
    assert _save_events(page, herald, token, endpoint_id) == ["wallet.balance_low"]

    # "All events", from the keyboard, writes `*`; reloaded, every box shows checked.
    all_events.focus()
    page.keyboard.press("Space")
    expect(all_events).to_be_checked()
    assert _save_events(page, herald, token, endpoint_id) == ["*"]
    page.reload()
    ready(page)
    expect(all_events).to_be_checked()
    expect(wallet_box).to_be_checked()
    expect(page.get_by_role("checkbox", name="brand.vetted", exact=True)).to_be_checked()
    expect(save_events).to_be_disabled()
    axe_scan(page, "settings (all events)")

    # Unchecking one type under `*`: its group becomes names, the other groups their wildcards.
    page.get_by_role("checkbox", name="wallet.balance_zero", exact=True).uncheck()
    expect(all_events).not_to_be_checked()
    events = _save_events(page, herald, token, endpoint_id)
    assert "wallet.balance_low" in events and "brand.*" in events and "phone_number.*" in events
    assert not {"*", "wallet.*", "wallet.balance_zero", "brand.vetted"} & set(events), events

    # The picker with a wildcard fits 360 px.
    status, _, _ = herald.request("PATCH", f"/v1/webhooks/{endpoint_id}", token=token,
                                  body={"events": ["wallet.*", "brand.vetted"]})
    assert status == 200
    small = new_page(viewport={"width": 360, "height": 780})
    small.goto(s["url"])
    ready(small)
    go(small, f"#/endpoints/{endpoint_id}/settings")
    swallet = small.locator("[data-group=wallet]")
    expect(swallet.locator("[data-wildcard-note]")).to_be_visible()
    swallet.scroll_into_view_if_needed()
    wide = small.evaluate("document.documentElement.scrollWidth")
    assert wide <= 360, f"the picker is {wide} px wide at 360 px"
    axe_scan(small, "settings (wildcard) 360 px")
    shot(small, shots_dir, "picker-wildcard-360", backend_name)
