// A complete HTTPS webhook receiver for Herald, on Node's standard library only.
//
// It serves POST /webhooks over TLS and, for each request:
//   1. verifies the signature over the raw body bytes, with the timestamp at most 5 minutes
//      from this machine's clock. With WEBHOOK_SECRET: X-AmCore-Signature, HMAC-SHA256 keyed
//      with the secret's 32 decoded bytes over "<t>\n<body>", compared with
//      crypto.timingSafeEqual. With WEBHOOK_PUBLIC_KEY instead: the v1a entry of
//      webhook-signature, an Ed25519 signature over "<webhook-id>.<webhook-timestamp>.<body>",
//      holding no secret at all;
//   2. dedupes on the event id taken from the signed body (a retry of an event already taken
//      is answered 200 and not processed again);
//   3. answers 204 at once and processes the event afterwards, one at a time.
// It logs one line per verdict on stderr: "accepted", "duplicate" or "rejected".
// It keeps the highest X-AmCore-Sequence it has processed (in memory) and, when a delivery
// skips ahead, logs the gap and first processes the missed events, fetched from Herald's
// catch-up feed. docs/receiving.md explains each step.
//
// Configuration, from the environment (exactly one of the first two):
//   WEBHOOK_SECRET   the endpoint secret as Herald showed it (base64; "whsec_..." also accepted)
//   WEBHOOK_PUBLIC_KEY
//                    the organization's public key: the "x" of GET /v1/webhook-keys (base64url)
//   TLS_CERT_FILE    PEM certificate chain to serve with
//   TLS_KEY_FILE     PEM private key
//   PORT             port to listen on, default 8443
//   HOST             address to listen on, default 127.0.0.1
//   HERALD_API_URL, HERALD_API_KEY, HERALD_ENDPOINT_ID
//                    Herald's API, a key with webhooks:read and this endpoint's id, for the
//                    catch-up feed; without all three, sequence gaps are only logged
//
// Build and run: npm ci && npm run build && node dist/receiver.js

import { type KeyObject, createHmac, createPublicKey, timingSafeEqual, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer } from "node:https";

const TOLERANCE_SECONDS = 5 * 60;
const MAX_BODY_BYTES = 1024 * 1024;
// Herald retries a delivery for about three days: a real receiver keeps the ids of events it
// took at least that long, in its database. The example keeps the most recent ones in memory.
const REMEMBERED_EVENTS = 100_000;
const FEED_PAGE_LIMIT = 200;

/** A request that must not be processed, with the status to answer. */
export class Rejected extends Error {
  constructor(
    readonly status: number,
    reason: string,
  ) {
    super(reason);
  }
}

/** The parts of the envelope this receiver reads. */
interface HeraldEvent {
  id: string;
  type: string;
  data: unknown;
}

/** The 32 secret bytes from the base64 Herald showed (or its "whsec_" form). */
export function parseSecret(text: string): Buffer {
  const base64 = text.trim().replace(/^whsec_/, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(base64)) {
    throw new Error("WEBHOOK_SECRET is not base64");
  }
  const key = Buffer.from(base64, "base64");
  if (key.length !== 32) {
    throw new Error(`WEBHOOK_SECRET decodes to ${key.length} bytes, not 32`);
  }
  return key;
}

/**
 * Checks "t=<unix seconds>,v1=<hex>[,v1=<hex>]" and returns the signed timestamp.
 *
 * Accepts when the timestamp is within `toleranceSeconds` of `now` and any v1 matches the body
 * under any of `secrets` (each 32 bytes). Unknown schemes (v2=...) are skipped.
 */
export function verifyAmcore(
  header: string | undefined,
  body: Buffer,
  secrets: Buffer[],
  now: number,
  toleranceSeconds: number = TOLERANCE_SECONDS,
): number {
  if (header === undefined) {
    throw new Rejected(400, "missing X-AmCore-Signature");
  }
  let timestamp: number | undefined;
  const signatures: string[] = [];
  for (const item of header.split(",")) {
    const equals = item.indexOf("=");
    if (equals < 0) {
      throw new Rejected(400, "malformed signature header");
    }
    const key = item.slice(0, equals);
    const value = item.slice(equals + 1);
    if (key === "t") {
      if (timestamp !== undefined || !/^[0-9]{1,15}$/.test(value)) {
        throw new Rejected(400, "malformed signature header");
      }
      timestamp = Number(value);
    } else if (key === "v1") {
      signatures.push(value);
    }
  }
  if (timestamp === undefined || signatures.length === 0) {
    throw new Rejected(400, "malformed signature header");
  }
  if (Math.abs(now - timestamp) > toleranceSeconds) {
    throw new Rejected(401, "timestamp outside tolerance");
  }
  // Buffer.from(text, "hex") stops silently at the first bad digit, so check the shape first.
  const candidates = signatures
    .filter((signature) => /^[0-9a-f]{64}$/i.test(signature))
    .map((signature) => Buffer.from(signature, "hex"));
  for (const secret of secrets) {
    const expected = createHmac("sha256", secret)
      .update(`${timestamp}\n`)
      .update(body)
      .digest();
    // timingSafeEqual takes the same time wherever the buffers differ (both are 32 bytes).
    if (candidates.some((candidate) => timingSafeEqual(expected, candidate))) {
      return timestamp;
    }
  }
  throw new Rejected(401, "no matching signature");
}

/** The Ed25519 public key from the "x" of GET /v1/webhook-keys (base64url, no padding). */
export function parsePublicKey(text: string): KeyObject {
  const x = text.trim().replace(/=+$/, "");
  if (!/^[A-Za-z0-9_-]{43}$/.test(x)) {
    throw new Error("WEBHOOK_PUBLIC_KEY must be the base64url of 32 bytes");
  }
  return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x }, format: "jwk" });
}

/**
 * Checks the v1a entries of webhook-signature ("v1,<b64> v1a,<b64> ...") and returns the signed
 * timestamp.
 *
 * Accepts when the timestamp is within `toleranceSeconds` of `now` and any v1a entry is an
 * Ed25519 signature of "<webhook-id>.<webhook-timestamp>.<body>" by `publicKey`. The v1 entries
 * need the endpoint secret and are skipped. A public-key check has nothing secret to leak, so it
 * needs no constant-time comparison.
 */
export function verifyV1a(
  msgId: string | undefined,
  timestamp: string | undefined,
  header: string | undefined,
  body: Buffer,
  publicKey: KeyObject,
  now: number,
  toleranceSeconds: number = TOLERANCE_SECONDS,
): number {
  if (!msgId || timestamp === undefined || header === undefined) {
    throw new Rejected(400, "missing webhook-id, webhook-timestamp or webhook-signature");
  }
  if (!/^[0-9]{1,15}$/.test(timestamp)) {
    throw new Rejected(400, "malformed webhook-timestamp");
  }
  const signatures = header
    .split(" ")
    .filter((entry) => entry.startsWith("v1a,"))
    .map((entry) => entry.slice("v1a,".length));
  if (signatures.length === 0) {
    throw new Rejected(400, "no v1a signature");
  }
  if (Math.abs(now - Number(timestamp)) > toleranceSeconds) {
    throw new Rejected(401, "timestamp outside tolerance");
  }
  const content = Buffer.concat([Buffer.from(`${msgId}.${timestamp}.`), body]);
  // Buffer.from(text, "base64") skips characters it does not know, so check the shape first.
  const matches = signatures
    .filter((signature) => /^[A-Za-z0-9+/]{86}==$/.test(signature))
    .some((signature) => verify(null, content, publicKey, Buffer.from(signature, "base64")));
  if (!matches) {
    throw new Rejected(401, "no matching signature");
  }
  return Number(timestamp);
}

/** What a delivery is verified with: the endpoint secret, or the organization's public key. */
export type VerifyingKey = { secret: Buffer } | { publicKey: KeyObject };

/** The most recent REMEMBERED_EVENTS event ids (a Map keeps insertion order). */
export class SeenEvents {
  private readonly ids = new Map<string, true>();

  /** Remembers the id; false when it was already remembered. */
  add(eventId: string): boolean {
    if (this.ids.has(eventId)) {
      return false;
    }
    this.ids.set(eventId, true);
    if (this.ids.size > REMEMBERED_EVENTS) {
      const oldest = this.ids.keys().next();
      if (!oldest.done) {
        this.ids.delete(oldest.value);
      }
    }
    return true;
  }
}

function log(line: string): void {
  console.error(`${new Date().toISOString()} ${line}`);
}

/** Reads the raw body, refusing more than MAX_BODY_BYTES. */
function readBody(request: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Rejected(413, "body too large"));
        request.destroy();
        return;
      }
      chunks.push(chunk);
    });
    request.on("end", () => resolve(Buffer.concat(chunks)));
    request.on("error", reject);
  });
}

/** A request header as one string; repeated headers joined with `separator`. */
function headerOf(request: IncomingMessage, name: string, separator: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value.join(separator) : value;
}

/** Verifies first, and only then parses. */
async function verifiedEvent(request: IncomingMessage, key: VerifyingKey): Promise<HeraldEvent> {
  const body = await readBody(request);
  const now = Math.floor(Date.now() / 1000);
  if ("publicKey" in key) {
    verifyV1a(
      headerOf(request, "webhook-id", ","),
      headerOf(request, "webhook-timestamp", ","),
      headerOf(request, "webhook-signature", " "),
      body,
      key.publicKey,
      now,
    );
  } else {
    verifyAmcore(headerOf(request, "x-amcore-signature", ","), body, [key.secret], now);
  }
  let event: unknown;
  try {
    event = JSON.parse(body.toString("utf8"));
  } catch {
    throw new Rejected(400, "body is not JSON");
  }
  const candidate = event as Partial<HeraldEvent> | null;
  if (typeof candidate?.id !== "string" || typeof candidate.type !== "string") {
    throw new Rejected(400, "body is not an event");
  }
  return candidate as HeraldEvent;
}

/** The slow part: here, only logging the event. */
function processEvent(event: HeraldEvent): void {
  log(`processed event_id=${event.id} data=${JSON.stringify(event.data)}`);
}

/** One entry of the catch-up feed; only the fields this receiver reads. */
interface FeedEntry {
  sequence: number;
  event_id: string;
  status: "pending" | "delivered" | "dead";
  body: HeraldEvent;
}

/** Herald's catch-up feed for one endpoint: GET /v1/webhooks/{id}/events. */
export class Feed {
  private readonly url: string;

  constructor(
    apiUrl: string,
    private readonly apiKey: string,
    endpointId: string,
  ) {
    this.url = `${apiUrl.replace(/\/+$/, "")}/v1/webhooks/${encodeURIComponent(endpointId)}/events`;
  }

  /** The entries after `after` and before `before`, following the pages. */
  async *missed(after: number, before: number): AsyncGenerator<FeedEntry> {
    let next: number | null = after;
    while (next !== null) {
      const response = await fetch(`${this.url}?after_sequence=${next}&limit=${FEED_PAGE_LIMIT}`, {
        headers: { authorization: `Bearer ${this.apiKey}` },
        signal: AbortSignal.timeout(10_000),
      });
      if (!response.ok) {
        throw new Error(`the feed answered ${response.status}`);
      }
      const page = (await response.json()) as {
        data: FeedEntry[];
        meta: { next_after_sequence: number | null };
      };
      for (const entry of page.data) {
        if (entry.sequence >= before) {
          return; // this delivery, and what follows it, arrive on their own
        }
        yield entry;
      }
      next = page.meta.next_after_sequence;
    }
  }
}

/**
 * Processes deliveries one at a time, in the order they were accepted, first catching up on
 * the events a delivery's sequence number shows were missed.
 *
 * `last` is the sequence number up to which everything has been processed. It lives in
 * memory, so the first numbered delivery after a start is taken as the starting point; a real
 * receiver stores it with its work and catches up from there after a restart.
 */
export class Worker {
  private last: number | undefined;
  private tail: Promise<void> = Promise.resolve();

  constructor(
    private readonly seen: SeenEvents,
    private readonly feed: Feed | undefined,
  ) {}

  /** Queues `event`; `sequence` is undefined on a test send, which is processed as before. */
  enqueue(event: HeraldEvent, sequence: number | undefined): Promise<void> {
    this.tail = this.tail.then(() => this.handle(event, sequence));
    return this.tail;
  }

  private async handle(event: HeraldEvent, sequence: number | undefined): Promise<void> {
    if (sequence !== undefined) {
      let caughtUp = true;
      if (this.last !== undefined && sequence > this.last + 1) {
        log(`sequence gap last=${this.last} sequence=${sequence}`);
        // Without the feed the gap is only logged. When it fails, `last` stays where it is,
        // so the next delivery asks again.
        caughtUp = this.feed === undefined || (await this.catchUp(this.feed, this.last, sequence));
      }
      if (caughtUp) {
        this.last = Math.max(this.last ?? sequence, sequence);
      }
    }
    processEvent(event);
  }

  /** Processes the missed events not taken yet; false when the feed could not be read. */
  private async catchUp(feed: Feed, after: number, before: number): Promise<boolean> {
    try {
      for await (const entry of feed.missed(after, before)) {
        if (this.seen.add(entry.event_id)) {
          const { event_id: id, sequence, status } = entry;
          log(`caught up event_id=${id} sequence=${sequence} status=${status}`);
          processEvent(entry.body);
        }
      }
      return true;
    } catch (error) {
      log(`catch-up failed: ${error instanceof Error ? error.message : String(error)}`);
      return false;
    }
  }
}

/** `X-AmCore-Sequence`, or undefined when absent (a test send) or not a number. */
function sequenceOf(request: IncomingMessage): number | undefined {
  const header = request.headers["x-amcore-sequence"];
  return typeof header === "string" && /^[0-9]{1,15}$/.test(header) ? Number(header) : undefined;
}

function receiver(key: VerifyingKey, feed: Feed | undefined) {
  const seen = new SeenEvents();
  const worker = new Worker(seen, feed);
  return async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    if (request.method !== "POST" || request.url !== "/webhooks") {
      response.writeHead(404).end();
      return;
    }
    let event: HeraldEvent;
    try {
      event = await verifiedEvent(request, key);
    } catch (error) {
      const status = error instanceof Rejected ? error.status : 400;
      log(`rejected reason=${error instanceof Error ? error.message : String(error)}`);
      response.writeHead(status).end();
      return;
    }
    if (!seen.add(event.id)) {
      log(`duplicate event_id=${event.id}`);
      response.writeHead(200).end();
      return;
    }
    log(`accepted event_id=${event.id} event_type=${event.type}`);
    response.writeHead(204).end();
    // The sequence number is not signed: it only tells the worker when to ask the catch-up
    // feed, which answers from Herald itself.
    void worker.enqueue(event, sequenceOf(request));
  };
}

function main(): void {
  const required = (name: string): string => {
    const value = process.env[name];
    if (value === undefined || value === "") {
      throw new Error(`${name} must be set`);
    }
    return value;
  };
  const { WEBHOOK_SECRET: secret, WEBHOOK_PUBLIC_KEY: publicKey } = process.env;
  if (!secret === !publicKey) {
    throw new Error("set exactly one of WEBHOOK_SECRET and WEBHOOK_PUBLIC_KEY");
  }
  const key: VerifyingKey = publicKey
    ? { publicKey: parsePublicKey(publicKey) }
    : { secret: parseSecret(secret ?? "") };
  log(
    publicKey
      ? "verifying v1a with WEBHOOK_PUBLIC_KEY"
      : "verifying X-AmCore-Signature with WEBHOOK_SECRET",
  );
  const host = process.env.HOST ?? "127.0.0.1";
  const port = Number(process.env.PORT ?? "8443");
  const { HERALD_API_URL: apiUrl, HERALD_API_KEY: apiKey, HERALD_ENDPOINT_ID: endpointId } =
    process.env;
  let feed: Feed | undefined;
  if (apiUrl && apiKey && endpointId) {
    feed = new Feed(apiUrl, apiKey, endpointId);
  } else {
    log("catch-up feed off: HERALD_API_URL, HERALD_API_KEY or HERALD_ENDPOINT_ID is not set");
  }
  const server = createServer(
    { cert: readFileSync(required("TLS_CERT_FILE")), key: readFileSync(required("TLS_KEY_FILE")) },
    receiver(key, feed),
  );
  // Drop clients that stall, as Herald's own 15-second deadline would.
  server.requestTimeout = 10_000;
  server.listen(port, host, () => log(`listening on https://${host}:${port}/webhooks`));
  process.on("SIGTERM", () => server.close());
}

if (require.main === module) {
  main();
}
