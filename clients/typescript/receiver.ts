// A receiver's side: the body of every delivery, typed per event type from the `webhooks`
// section of Herald's OpenAPI document (one operation per catalog type, with the type's JSON
// Schema as `data`). scripts/check-typescript-client type-checks this file in CI, so a change
// to the catalog or the envelope that breaks a receiver's types fails there. Verify the
// signature before trusting a body (docs/receiving.md); this file only shows the types.

import type { webhooks } from "./schema";

/** The delivery body Herald POSTs for the catalog type `T`. */
export type WebhookEvent<T extends keyof webhooks> =
  webhooks[T]["post"]["requestBody"]["content"]["application/json"];

/** Any delivery body: a union discriminated by `type`. */
export type AnyWebhookEvent = { [T in keyof webhooks]: WebhookEvent<T> }[keyof webhooks];

/** Reads a verified body. */
export function parseDelivery(body: string): AnyWebhookEvent {
  return JSON.parse(body) as AnyWebhookEvent;
}

/** Switches on `type`: in each branch `data` has that type's shape. */
export function describe(event: AnyWebhookEvent): string {
  switch (event.type) {
    case "wallet.balance_low":
      return `wallet of ${event.org_id} is low: ${JSON.stringify(event.data)}`;
    case "endpoint.disabled":
      return `an endpoint was disabled (${event.id})`;
    case "delivery.exhausted":
      return `a delivery failed for good (${event.id})`;
    default:
      return `${event.type} at ${event.created_at}`;
  }
}
