// Drives seatd's organization API (/v1/customer-seats) with Polar's
// official SDK, unchanged, as a seller's backend would. Input: a JSON file
// {sdk, baseUrl, token, readOnly, subscriptionId, orderId,
// foreignSubscriptionId, foreignSeat}, where sdk is the directory whose
// node_modules hold @polar-sh/sdk. Prints one JSON object: each call's
// value, or the SDK error it raised (class, statusCode, parsed body).
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { createPolar } = await import(
  pathToFileURL(`${cfg.sdk}/node_modules/@polar-sh/sdk/dist/2026-10/index.mjs`).href
);
const polar = createPolar({ baseUrl: cfg.baseUrl, accessToken: cfg.token });
const readOnly = createPolar({ baseUrl: cfg.baseUrl, accessToken: cfg.readOnly });
const unknown = createPolar({ baseUrl: cfg.baseUrl, accessToken: "polar_oat_unknown" });
const out = {};

async function call(name, fn) {
  try {
    out[name] = { ok: true, value: await fn() };
  } catch (e) {
    out[name] = { ok: false, class: e.name, status: e.statusCode ?? null, error: e.error ?? null };
  }
}

await call("assign", () =>
  polar.customerSeats.assignSeat({
    subscription_id: cfg.subscriptionId,
    email: "sdk@example.com",
    metadata: { via: "sdk" },
  }),
);
const seat = out.assign.value ?? { id: "00000000-0000-4000-8000-000000000000" };
await call("assignOrder", () =>
  polar.customerSeats.assignSeat({ order_id: cfg.orderId, email: "sdk-order@example.com", immediate_claim: true }),
);
await call("list", () => polar.customerSeats.listSeats({ subscription_id: cfg.subscriptionId }));
await call("listOrder", () => polar.customerSeats.listSeats({ order_id: cfg.orderId }));
await call("resend", () => polar.customerSeats.resendInvitation(seat.id));
await call("revoke", () => polar.customerSeats.revokeSeat(seat.id));
await call("resendRevoked", () => polar.customerSeats.resendInvitation(seat.id));
await call("listNeither", () => polar.customerSeats.listSeats({}));
await call("invalid", () => polar.customerSeats.assignSeat({ email: "x@example.com" }));
await call("foreignAssign", () =>
  polar.customerSeats.assignSeat({ subscription_id: cfg.foreignSubscriptionId, email: "x@example.com" }),
);
await call("foreignList", () => polar.customerSeats.listSeats({ subscription_id: cfg.foreignSubscriptionId }));
await call("foreignResend", () => polar.customerSeats.resendInvitation(cfg.foreignSeat));
await call("foreignRevoke", () => polar.customerSeats.revokeSeat(cfg.foreignSeat));
await call("readOnlyList", () => readOnly.customerSeats.listSeats({ subscription_id: cfg.subscriptionId }));
await call("readOnlyAssign", () =>
  readOnly.customerSeats.assignSeat({ subscription_id: cfg.subscriptionId, email: "ro@example.com" }),
);
await call("readOnlyRevoke", () => readOnly.customerSeats.revokeSeat(seat.id));
await call("unknownToken", () => unknown.customerSeats.listSeats({ subscription_id: cfg.subscriptionId }));
console.log(JSON.stringify(out));
