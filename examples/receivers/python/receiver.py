#!/usr/bin/env python3
"""A complete HTTPS webhook receiver for Herald, with nothing but the standard library
(and `cryptography`, only to verify v1a with a public key).

It serves POST /webhooks over TLS and, for each request:
  1. verifies the signature over the raw body bytes, with the timestamp at most 5 minutes
     from this machine's clock. With WEBHOOK_SECRET: X-AmCore-Signature, HMAC-SHA256 keyed
     with the secret's 32 decoded bytes over "<t>\\n<body>", compared in constant time. With
     WEBHOOK_PUBLIC_KEY instead: the v1a entry of webhook-signature, an Ed25519 signature
     over "<webhook-id>.<webhook-timestamp>.<body>", holding no secret at all;
  2. dedupes on the event id taken from the signed body (a retry of an event already taken
     is answered 200 and not processed again);
  3. queues the event for a worker thread and answers 204 at once.
It logs one line per verdict on stderr: "accepted", "duplicate" or "rejected".
The worker keeps the highest X-AmCore-Sequence it has processed (in memory) and, when a
delivery skips ahead, logs the gap and first processes the missed events, fetched from
Herald's catch-up feed. docs/receiving.md explains each step.

Configuration, from the environment (exactly one of the first two):
  WEBHOOK_SECRET   the endpoint secret as Herald showed it (base64; "whsec_..." also accepted)
  WEBHOOK_PUBLIC_KEY
                   the organization's public key: the "x" of GET /v1/webhook-keys (base64url);
                   needs `pip install cryptography`
  TLS_CERT_FILE    PEM certificate chain to serve with
  TLS_KEY_FILE     PEM private key
  PORT             port to listen on, default 8443
  HOST             address to listen on, default 127.0.0.1
  HERALD_API_URL, HERALD_API_KEY, HERALD_ENDPOINT_ID
                   Herald's API, a key with webhooks:read and this endpoint's id, for the
                   catch-up feed; without all three, sequence gaps are only logged
"""

import base64
import binascii
import collections
import hashlib
import hmac
import json
import logging
import os
import queue
import re
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECONDS = 5 * 60
MAX_BODY_BYTES = 1024 * 1024
# Herald retries a delivery for about three days: a real receiver keeps the ids of events it
# took at least that long, in its database. The example keeps the most recent ones in memory.
REMEMBERED_EVENTS = 100_000
QUEUE_CAPACITY = 1024
FEED_PAGE_LIMIT = 200

log = logging.getLogger("receiver")


class Rejected(Exception):
    """A request that must not be processed, with the status to answer."""

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status


def parse_secret(text):
    """The 32 secret bytes from the base64 Herald showed (or its "whsec_" form)."""
    text = text.strip()
    if text.startswith("whsec_"):
        text = text[len("whsec_"):]
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error as error:
        raise ValueError("WEBHOOK_SECRET is not base64") from error
    if len(key) != 32:
        raise ValueError(f"WEBHOOK_SECRET decodes to {len(key)} bytes, not 32")
    return key


def verify_amcore(header, body, secrets, now, tolerance=TOLERANCE_SECONDS):
    """Checks "t=<unix seconds>,v1=<hex>[,v1=<hex>]"; returns the signed timestamp.

    Accepts when the timestamp is within `tolerance` seconds of `now` and any v1 matches the
    body under any of `secrets` (each 32 bytes). Unknown schemes (v2=...) are skipped.
    """
    if header is None:
        raise Rejected(400, "missing X-AmCore-Signature")
    timestamp, signatures = None, []
    for item in header.split(","):
        key, equals, value = item.partition("=")
        if not equals:
            raise Rejected(400, "malformed signature header")
        if key == "t":
            if timestamp is not None or not re.fullmatch(r"[0-9]{1,18}", value):
                raise Rejected(400, "malformed signature header")
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise Rejected(400, "malformed signature header")
    if abs(now - timestamp) > tolerance:
        raise Rejected(401, "timestamp outside tolerance")
    signed = str(timestamp).encode() + b"\n" + body
    for secret in secrets:
        expected = hmac.new(secret, signed, hashlib.sha256).hexdigest().encode()
        # compare_digest takes the same time wherever the strings differ.
        if any(hmac.compare_digest(expected, candidate.encode()) for candidate in signatures):
            return timestamp
    raise Rejected(401, "no matching signature")


def parse_public_key(text):
    """The Ed25519 public key from the "x" of GET /v1/webhook-keys (base64url, no padding)."""
    # Imported here so that a receiver verifying with a secret needs only the standard library.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = text.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise ValueError("WEBHOOK_PUBLIC_KEY is not base64url") from error
    if len(raw) != 32:
        raise ValueError(f"WEBHOOK_PUBLIC_KEY decodes to {len(raw)} bytes, not 32")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_v1a(msg_id, timestamp, header, body, public_key, now, tolerance=TOLERANCE_SECONDS):
    """Checks the v1a entries of webhook-signature ("v1,<b64> v1a,<b64> ..."); returns the
    signed timestamp.

    Accepts when the timestamp is within `tolerance` seconds of `now` and any v1a entry is an
    Ed25519 signature of "<webhook-id>.<webhook-timestamp>.<body>" by `public_key`. The v1
    entries need the endpoint secret and are skipped. A public-key check has nothing secret to
    leak, so it needs no constant-time comparison.
    """
    from cryptography.exceptions import InvalidSignature

    if not msg_id or timestamp is None or header is None:
        raise Rejected(400, "missing webhook-id, webhook-timestamp or webhook-signature")
    if not re.fullmatch(r"[0-9]{1,18}", timestamp):
        raise Rejected(400, "malformed webhook-timestamp")
    signatures = [entry[len("v1a,"):] for entry in header.split() if entry.startswith("v1a,")]
    if not signatures:
        raise Rejected(400, "no v1a signature")
    if abs(now - int(timestamp)) > tolerance:
        raise Rejected(401, "timestamp outside tolerance")
    content = f"{msg_id}.{timestamp}.".encode() + body
    for signature in signatures:
        try:
            public_key.verify(base64.b64decode(signature, validate=True), content)
            return int(timestamp)
        except (binascii.Error, InvalidSignature):
            continue
    raise Rejected(401, "no matching signature")


class SeenEvents:
    """The most recent REMEMBERED_EVENTS event ids, shared by the request threads."""

    def __init__(self):
        self._ids = collections.OrderedDict()
        self._lock = threading.Lock()

    def add(self, event_id):
        """Remembers the id; False when it was already remembered."""
        with self._lock:
            if event_id in self._ids:
                return False
            self._ids[event_id] = None
            if len(self._ids) > REMEMBERED_EVENTS:
                self._ids.popitem(last=False)
            return True

    def forget(self, event_id):
        with self._lock:
            self._ids.pop(event_id, None)


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so Herald reuses its connection
    timeout = 10  # seconds a client may stall before its connection is dropped
    secret = None  # 32 bytes, or
    public_key = None  # an Ed25519PublicKey: exactly one is set
    seen = SeenEvents()
    work = queue.Queue(maxsize=QUEUE_CAPACITY)

    def setup(self):
        # The TLS handshake runs here, in this connection's thread, not in the accept loop,
        # so one slow client cannot hold up the others.
        self.request.settimeout(self.timeout)
        self.request.do_handshake()
        super().setup()

    def do_POST(self):
        if self.path != "/webhooks":
            return self.answer(404)
        try:
            event = self.verified_event()
        except Rejected as rejected:
            log.warning("rejected reason=%s", rejected)
            return self.answer(rejected.status)

        if not self.seen.add(event["id"]):
            log.info("duplicate event_id=%s", event["id"])
            return self.answer(200)
        # Not signed: it only tells the worker when to ask the catch-up feed, which answers
        # from Herald itself. A test send has none.
        sequence = self.headers.get("X-AmCore-Sequence", "")
        try:
            self.work.put_nowait((event, int(sequence) if sequence.isdigit() else None))
        except queue.Full:
            # Forget the id so that Herald's retry is taken, and ask for that retry.
            self.seen.forget(event["id"])
            log.warning("deferred event_id=%s reason=queue full", event["id"])
            return self.answer(503)
        log.info("accepted event_id=%s event_type=%s", event["id"], event["type"])
        return self.answer(204)

    def verified_event(self):
        """Reads the raw body, verifies it, and only then parses it."""
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise Rejected(411, "no Content-Length")
        if int(length) > MAX_BODY_BYTES:
            self.close_connection = True
            raise Rejected(413, "body too large")
        body = self.rfile.read(int(length))
        if self.public_key is not None:
            verify_v1a(
                self.headers.get("webhook-id"), self.headers.get("webhook-timestamp"),
                self.headers.get("webhook-signature"), body, self.public_key, int(time.time()),
            )
        else:
            verify_amcore(
                self.headers.get("X-AmCore-Signature"), body, [self.secret], int(time.time())
            )
        try:
            event = json.loads(body)
            if not isinstance(event["id"], str) or not isinstance(event["type"], str):
                raise TypeError("id and type must be strings")
        except (ValueError, KeyError, TypeError) as error:
            raise Rejected(400, f"body is not an event: {error}") from error
        return event

    def answer(self, status):
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):  # noqa: A002 - the signature http.server defines
        log.debug(format, *args)


class Feed:
    """Herald's catch-up feed for one endpoint: GET /v1/webhooks/{id}/events."""

    def __init__(self, api_url, api_key, endpoint_id):
        self.url = f"{api_url.rstrip('/')}/v1/webhooks/{urllib.parse.quote(endpoint_id)}/events"
        self.api_key = api_key

    def missed(self, after, before):
        """Yields the feed's entries after `after` and before `before`, following the pages."""
        while True:
            query = urllib.parse.urlencode({"after_sequence": after, "limit": FEED_PAGE_LIMIT})
            request = urllib.request.Request(f"{self.url}?{query}")
            request.add_header("Authorization", f"Bearer {self.api_key}")
            with urllib.request.urlopen(request, timeout=10) as response:
                page = json.load(response)
            for entry in page["data"]:
                if entry["sequence"] >= before:
                    return  # this delivery, and what follows it, arrive on their own
                yield entry
            after = page["meta"]["next_after_sequence"]
            if after is None:
                return


def process(event):
    """The slow part: here, only logging the event."""
    log.info("processed event_id=%s data=%s", event["id"], json.dumps(event.get("data")))


def process_events(feed):
    """Works through the queue, one delivery at a time, after the answers have gone.

    `last` is the sequence number up to which everything has been processed. It lives in
    memory, so the first numbered delivery after a start is taken as the starting point; a
    real receiver stores it with its work and catches up from there after a restart.
    """
    last = None
    while True:
        event, sequence = Receiver.work.get()
        if sequence is not None:  # a test send has none and is processed as before
            caught_up = True
            if last is not None and sequence > last + 1:
                log.warning("sequence gap last=%d sequence=%d", last, sequence)
                # Without the feed the gap is only logged. When it fails, `last` stays where it
                # is, so the next delivery asks again.
                caught_up = feed is None or catch_up(feed, last, sequence)
            if caught_up:
                last = sequence if last is None else max(last, sequence)
        process(event)


def catch_up(feed, last, sequence):
    """Processes the missed events not taken yet; False when the feed could not be read."""
    try:
        for entry in feed.missed(last, sequence):
            if Receiver.seen.add(entry["event_id"]):
                log.info("caught up event_id=%s sequence=%d status=%s",
                         entry["event_id"], entry["sequence"], entry["status"])
                process(entry["body"])
    except (OSError, ValueError, KeyError) as error:
        log.warning("catch-up failed: %s", error)
        return False
    return True


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A failed TLS handshake or a dropped connection: one line, not a traceback.
        log.warning("connection from %s failed: %s", client_address[0], sys.exc_info()[1])


def main():
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    secret, public_key = os.environ.get("WEBHOOK_SECRET"), os.environ.get("WEBHOOK_PUBLIC_KEY")
    try:
        if bool(secret) == bool(public_key):
            raise ValueError("set exactly one of WEBHOOK_SECRET and WEBHOOK_PUBLIC_KEY")
        if public_key:
            Receiver.public_key = parse_public_key(public_key)
        else:
            Receiver.secret = parse_secret(secret)
        cert_file, key_file = os.environ["TLS_CERT_FILE"], os.environ["TLS_KEY_FILE"]
    except (KeyError, ValueError, ImportError) as error:
        sys.exit(f"configuration: {error} (see the docstring)")
    log.info("verifying %s", "v1a with WEBHOOK_PUBLIC_KEY" if public_key
             else "X-AmCore-Signature with WEBHOOK_SECRET")
    feed = None
    settings = [os.environ.get(name) for name in
                ("HERALD_API_URL", "HERALD_API_KEY", "HERALD_ENDPOINT_ID")]
    if all(settings):
        feed = Feed(*settings)
    else:
        log.info("catch-up feed off: HERALD_API_URL, HERALD_API_KEY or HERALD_ENDPOINT_ID "
                 "is not set")
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8443"))

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    server = Server((host, port), Receiver)
    server.socket = tls.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    threading.Thread(target=process_events, args=(feed,), daemon=True).start()
    log.info("listening on https://%s:%d/webhooks", host, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
