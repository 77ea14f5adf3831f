#!/usr/bin/env python3
"""Verify one captured Herald delivery with implementations nobody on the project wrote.

Reads a JSON object on stdin:
    {"headers": {name: value, ...}, "body": "<exact body text>",
     "endpoint_secret": "<base64 of 32 bytes>", "org_secret": "<base64>" | null,
     "previous_secret": "<base64>" (optional), "public_key": "<base64url>" (optional),
     "now": <unix seconds, optional>}
and checks
  1. the Standard Webhooks headers with the official `standardwebhooks` package,
     using the secret `whsec_<endpoint secret>`, and, given a previous secret (a rotation's
     grace period), again with `whsec_<previous secret>` alone; `webhook-signature` holds
     exactly one `v1` entry per endpoint secret;
  2. `X-AmCore-Signature` with a plain `hmac` check: HMAC-SHA256 keyed with the decoded
     secret over "<t>\\n<body>", one `v1` per secret (endpoint, previous, then organization);
  3. given a public key (the `x` of `GET /v1/webhook-keys`), the `v1a` entry of
     `webhook-signature` with the `cryptography` package's Ed25519 over "<id>.<t>.<body>";
  4. the timestamp is within 5 minutes of `now`.
Exits 0 when every check passes, 1 with a reason on stderr otherwise.
"""

import base64
import hashlib
import hmac
import json
import sys
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

TOLERANCE_SECONDS = 5 * 60


def amcore_signatures(header):
    timestamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise ValueError("malformed X-AmCore-Signature")
    return timestamp, signatures


def expected_v1(secret_b64, timestamp, body):
    key = base64.b64decode(secret_b64)
    return hmac.new(key, timestamp.encode() + b"\n" + body, hashlib.sha256).hexdigest()


def v1a_verifies(public_key_b64url, headers, body, entries):
    key = Ed25519PublicKey.from_public_bytes(
        base64.urlsafe_b64decode(public_key_b64url + "=" * (-len(public_key_b64url) % 4))
    )
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    for entry in entries:
        version, _, signature = entry.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(signature), content)
            return True
        except (InvalidSignature, ValueError):
            continue
    return False


def main():
    capture = json.load(sys.stdin)
    headers = {name.lower(): value for name, value in capture["headers"].items()}
    body = capture["body"].encode()
    now = capture.get("now") or int(time.time())

    endpoint_secrets = [capture["endpoint_secret"]]
    if capture.get("previous_secret"):
        endpoint_secrets.append(capture["previous_secret"])
    for secret in endpoint_secrets:
        try:
            Webhook("whsec_" + secret).verify(body, headers)
        except WebhookVerificationError as error:
            print(f"standardwebhooks rejected the delivery: {error}", file=sys.stderr)
            return 1
    entries = headers["webhook-signature"].split(" ")
    v1_entries = [entry for entry in entries if entry.startswith("v1,")]
    if len(v1_entries) != len(endpoint_secrets):
        print(f"expected {len(endpoint_secrets)} v1 entries, got {len(v1_entries)}", file=sys.stderr)
        return 1
    if capture.get("public_key") and not v1a_verifies(capture["public_key"], headers, body, entries):
        print("no v1a entry verifies with the public key", file=sys.stderr)
        return 1

    timestamp, signatures = amcore_signatures(headers["x-amcore-signature"])
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        print("X-AmCore-Signature timestamp outside tolerance", file=sys.stderr)
        return 1
    secrets = list(endpoint_secrets)
    if capture.get("org_secret"):
        secrets.append(capture["org_secret"])
    if len(signatures) != len(secrets):
        print(f"expected {len(secrets)} v1 signatures, got {len(signatures)}", file=sys.stderr)
        return 1
    for secret, signature in zip(secrets, signatures):
        if not hmac.compare_digest(expected_v1(secret, timestamp, body), signature):
            print("X-AmCore-Signature does not match", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
