// Creates an endpoint and reads its signing secret, typed entirely by schema.d.ts, the
// definitions generated from Herald's OpenAPI document. scripts/check-typescript-client
// type-checks this file in CI, so a change to the API that breaks these types fails there.

import type { components, paths } from "./schema";

type CreateEndpointRequest =
  paths["/v1/webhooks"]["post"]["requestBody"]["content"]["application/json"];
type CreatedEndpoint =
  paths["/v1/webhooks"]["post"]["responses"][201]["content"]["application/json"];
type ErrorEnvelope = components["schemas"]["ErrorEnvelope"];

/** What a new endpoint needs to verify deliveries: its id and its secret, shown only now. */
export interface NewEndpoint {
  id: string;
  secret: string;
}

/** `POST /v1/webhooks` with an API key carrying `webhooks:write`. */
export async function createEndpoint(
  baseUrl: string,
  apiKey: string,
  request: CreateEndpointRequest,
): Promise<NewEndpoint> {
  const response = await fetch(`${baseUrl}/v1/webhooks`, {
    method: "POST",
    headers: {
      Authorization: `Bearer ${apiKey}`,
      "Content-Type": "application/json",
    },
    body: JSON.stringify(request),
  });
  if (response.status !== 201) {
    const envelope = (await response.json()) as ErrorEnvelope;
    const details = Object.entries(envelope.error.details ?? {})
      .map(([field, message]) => `${field}: ${message}`)
      .join("; ");
    throw new Error(`${envelope.error.code} (${envelope.error.request_id}) ${details}`);
  }
  const created = (await response.json()) as CreatedEndpoint;
  // `secret` and `secret_displayed_once` exist only on create and rotate answers.
  const secret: string = created.secret;
  const shownOnce: boolean = created.secret_displayed_once;
  if (!shownOnce) {
    throw new Error("a new secret is always displayed once");
  }
  return { id: created.id, secret };
}

export const billingEndpoint: CreateEndpointRequest = {
  url: "https://example.com/webhooks",
  events: ["wallet.balance_low", "wallet.balance_zero"],
  description: "billing",
};
