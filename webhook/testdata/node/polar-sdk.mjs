// Drives a running seatd with Polar's official TypeScript SDK
// (@polar-sh/sdk, API version 2026-10) exactly as a seller's backend and
// an invitee's browser would: every seat call of the customer portal and
// of the organization API, every error path the SDK types, and the
// webhooks seatd sends, verified with the SDK's validateEvent. Every
// response is checked against the SDK's own type declarations
// (sdktypes.mjs), so a field the SDK declares but seatd leaves out fails
// the run.
//
// Input: a JSON file written by the Go test (cmd/seatd/polarsdk_test.go)
// naming the base URL, tokens, ids and the mail drop. Output: one line of
// JSON per step on stdout, then a summary line; exit 1 if any step failed.
import { readFileSync, readdirSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { PolarClientError } from "@polar-sh/sdk";
import { createPolar, errors, webhooks } from "@polar-sh/sdk/2026-10";
import { typeChecker } from "./sdktypes.mjs";

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));

// The return type of each SDK method the run calls, and the error bodies.
const T = {
  portalAssign: 'Awaited<ReturnType<Polar["customerPortal"]["seats"]["assignSeat"]>>',
  portalList: 'Awaited<ReturnType<Polar["customerPortal"]["seats"]["listSeats"]>>',
  portalRevoke: 'Awaited<ReturnType<Polar["customerPortal"]["seats"]["revokeSeat"]>>',
  portalResend: 'Awaited<ReturnType<Polar["customerPortal"]["seats"]["resendInvitation"]>>',
  portalClaimed: 'Awaited<ReturnType<Polar["customerPortal"]["seats"]["listClaimedSubscriptions"]>>',
  subscription: "models.CustomerSubscription",
  orgAssign: 'Awaited<ReturnType<Polar["customerSeats"]["assignSeat"]>>',
  orgList: 'Awaited<ReturnType<Polar["customerSeats"]["listSeats"]>>',
  orgRevoke: 'Awaited<ReturnType<Polar["customerSeats"]["revokeSeat"]>>',
  orgResend: 'Awaited<ReturnType<Polar["customerSeats"]["resendInvitation"]>>',
  claimInfo: 'Awaited<ReturnType<Polar["customerSeats"]["getClaimInfo"]>>',
  claim: 'Awaited<ReturnType<Polar["customerSeats"]["claimSeat"]>>',
  webhook: "Awaited<ReturnType<typeof import(\"@polar-sh/sdk/2026-10\").webhooks.validateEvent>>",
  unauthorized: "models.Unauthorized",
  notFound: "models.ResourceNotFound",
  notPermitted: "models.NotPermitted",
  badRequest: "models.BadRequest",
  validation: "models.HTTPValidationError",
};
const types = typeChecker(Object.values(T));

const results = [];
let failed = 0;

function report(step, ok, extra = {}) {
  const line = { step, ok, ...extra };
  results.push(line);
  if (!ok) failed++;
  console.log(JSON.stringify(line));
}

// typed checks value against a type and fails the step on any problem.
function typed(value, type, what) {
  const { problems, extras } = types.check(value, type);
  if (problems.length > 0) {
    throw new Error(`${what} does not match the SDK's ${types.name(type)}: ${problems.join("; ")}`);
  }
  return extras;
}

function expect(cond, message) {
  if (!cond) throw new Error(message);
}

// step runs fn and reports it; fn returns extra fields for the report.
async function step(name, fn) {
  try {
    const extra = (await fn()) ?? {};
    report(name, true, extra);
  } catch (e) {
    report(name, false, { error: `${e.name}: ${e.message}` });
  }
}

// rejects runs call, which must throw the SDK error class named cls with
// the given status; the body (when the class types one, or bodyType is
// given) must match, and its error name and detail must be what Polar
// sends.
async function rejects(name, call, { cls, status, error, detail, bodyType }) {
  await step(name, async () => {
    let thrown;
    try {
      await call();
    } catch (e) {
      thrown = e;
    }
    expect(thrown, `expected ${cls}, got a success`);
    const want = cls === "PolarClientError" ? PolarClientError : errors[cls];
    expect(want && thrown.name === cls && thrown instanceof want,
      `expected ${cls}, got ${thrown.name}: ${thrown.message}`);
    expect(thrown.statusCode === status, `expected status ${status}, got ${thrown.statusCode}`);
    const body = typeof thrown.error === "string" ? JSON.parse(thrown.error) : thrown.error;
    if (bodyType) typed(body, bodyType, "error body");
    if (error !== undefined) expect(body?.error === error, `error ${JSON.stringify(body?.error)}, want ${error}`);
    if (detail !== undefined) {
      const d = typeof body?.detail === "string" ? body.detail : JSON.stringify(body?.detail);
      expect(detail instanceof RegExp ? detail.test(d) : d === detail, `detail ${JSON.stringify(d)}, want ${detail}`);
    }
    return { status, error: body?.error };
  });
}

// invitationToken waits for the invitation mail to address in the mail
// drop and returns the token of its claim link, as the invitee's click would.
async function invitationToken(address, notIn = new Set()) {
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    for (const f of readdirSync(cfg.mailDir)) {
      if (!f.endsWith(".eml") || notIn.has(f)) continue;
      const eml = readFileSync(join(cfg.mailDir, f), "utf8");
      if (!new RegExp(`^To: .*${address.replace(/[.+]/g, "\\$&")}`, "mi").test(eml)) continue;
      const m = eml.replace(/=\r?\n/g, "").match(/claim\?token=3D([A-Za-z0-9_-]+)|claim\?token=([A-Za-z0-9_-]+)/);
      if (m) return { token: m[1] ?? m[2], file: f };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no invitation mail to ${address} in ${cfg.mailDir}`);
}

// The webhook receiver: a seller's endpoint verifying with validateEvent.
const received = [];
const rejected = [];
const receiver = createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", async () => {
    const body = Buffer.concat(chunks).toString("utf8");
    const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
    try {
      const event = await webhooks.validateEvent(body, headers, cfg.webhookSecret);
      received.push({ id: headers["webhook-id"], event });
      res.writeHead(202).end();
    } catch (e) {
      rejected.push(`${e.name}: ${e.message}`);
      res.writeHead(400).end();
    }
  });
});
await new Promise((r) => receiver.listen(cfg.webhookPort, "127.0.0.1", r));

const base = { baseUrl: cfg.baseURL, timeout: 20 };
const customer = createPolar({ ...base, accessToken: cfg.tokens.customer });
const memberOnly = createPolar({ ...base, accessToken: cfg.tokens.member });
const anonymous = createPolar({ ...base, accessToken: "polar_cst_not-a-token" });
const org = createPolar({ ...base, accessToken: cfg.tokens.org });
const orgRead = createPolar({ ...base, accessToken: cfg.tokens.orgRead });
const otherOrg = createPolar({ ...base, accessToken: cfg.tokens.otherOrg });
const memberOrg = createPolar({ ...base, accessToken: cfg.tokens.memberOrg });
const memberModelCustomer = createPolar({ ...base, accessToken: cfg.tokens.memberModelCustomer });
// Initech turned seat-based pricing off after assigning ids.disabledSeat
// (pending, mailed to cfg.emails.disabled) and ids.disabledRevokedSeat.
const disabledCustomer = createPolar({ ...base, accessToken: cfg.tokens.disabledCustomer });
const disabledOrg = createPolar({ ...base, accessToken: cfg.tokens.disabledOrg });
const featureOff = "Seat-based pricing is not enabled for this organization";
const ids = cfg.ids;
const unknownID = "00000000-0000-4000-8000-000000000000";

// ---- Customer portal: the happy path ----
let pending, claimedNow, invite;
await step("portal assign (invitation)", async () => {
  pending = await customer.customerPortal.seats.assignSeat({ subscription_id: ids.subscription, email: cfg.emails.invitee });
  const ex = typed(pending, T.portalAssign, "assignSeat");
  expect(pending.status === "pending" && pending.invitation_token_expires_at, "seat not pending with an expiry");
  return { extras: ex };
});
await step("portal assign (immediate_claim, metadata)", async () => {
  claimedNow = await customer.customerPortal.seats.assignSeat({
    subscription_id: ids.subscription, email: cfg.emails.immediate, immediate_claim: true, metadata: { team: "core", n: 3 },
  });
  typed(claimedNow, T.portalAssign, "assignSeat");
  expect(claimedNow.status === "claimed" && claimedNow.claimed_at, "seat not claimed");
  expect(claimedNow.seat_metadata?.team === "core" && claimedNow.seat_metadata?.n === 3, "metadata not kept");
});
await step("portal list", async () => {
  const list = await customer.customerPortal.seats.listSeats({ subscription_id: ids.subscription });
  typed(list, T.portalList, "listSeats");
  expect(list.total_seats === cfg.seats, `total_seats ${list.total_seats}, want ${cfg.seats}`);
  expect(list.available_seats === cfg.seats - 2, `available_seats ${list.available_seats}, want ${cfg.seats - 2}`);
  expect(list.seats.some((s) => s.id === pending.id) && list.seats.some((s) => s.id === claimedNow.id), "seats missing");
});
await step("portal resend", async () => {
  const first = await invitationToken(cfg.emails.invitee);
  const seat = await customer.customerPortal.seats.resendInvitation(pending.id);
  typed(seat, T.portalResend, "resendInvitation");
  expect(seat.id === pending.id && seat.status === "pending", "resend changed the seat");
  invite = await invitationToken(cfg.emails.invitee, new Set([first.file]));
  expect(invite.token !== first.token, "resend kept the old token");
  return { old_token_dies: true };
});
await step("claim info", async () => {
  const info = await customer.customerSeats.getClaimInfo(invite.token);
  typed(info, T.claimInfo, "getClaimInfo");
  expect(info.can_claim === true && info.customer_email === cfg.emails.invitee, "claim info wrong");
  expect(info.product_id === ids.product, `product_id ${info.product_id}, want the product ${ids.product}`);
  expect(info.organization_name === cfg.orgName, "organization name");
});
let inviteeSession;
await step("claim", async () => {
  const out = await anonymous.customerSeats.claimSeat({ invitation_token: invite.token });
  typed(out, T.claim, "claimSeat");
  expect(out.seat.id === pending.id && out.seat.status === "claimed", "seat not claimed");
  inviteeSession = out.customer_session_token;
});
await step("claimed subscriptions (the invitee's session)", async () => {
  const invitee = createPolar({ ...base, accessToken: inviteeSession });
  const page = await invitee.customerPortal.seats.listClaimedSubscriptions({ page: 1, limit: 10 });
  typed(page, T.portalClaimed, "listClaimedSubscriptions");
  expect(page.items.length === 1 && page.items[0].id === ids.subscription, "claimed subscription missing");
  expect(page.pagination.total_count === 1 && page.pagination.max_page === 1, "pagination");
  expect(page.items[0].product_id === ids.product && page.items[0].product.id === ids.product, "product");
  const all = [];
  for await (const s of invitee.customerPortal.seats.iterListClaimedSubscriptions({ limit: 1 })) {
    typed(s, T.subscription, "iterListClaimedSubscriptions item");
    all.push(s.id);
  }
  expect(all.length === 1, `iterator yielded ${all.length}`);
});
await step("portal revoke (idempotent)", async () => {
  const seat = await customer.customerPortal.seats.revokeSeat(claimedNow.id);
  typed(seat, T.portalRevoke, "revokeSeat");
  expect(seat.status === "revoked" && seat.revoked_at && seat.customer_id === null && seat.email === null, "not revoked");
  const again = await customer.customerPortal.seats.revokeSeat(claimedNow.id);
  expect(again.revoked_at === seat.revoked_at, "a second revoke changed the seat");
});

// ---- Customer portal: every typed error ----
await rejects("portal assign: full pool", async () => {
  await customer.customerPortal.seats.assignSeat({ subscription_id: ids.fullSubscription, email: "late@example.com" });
}, { cls: "CustomerPortalSeatsAssignSeat400Error", status: 400, error: "SeatNotAvailable", detail: `No available seats for ${ids.fullSubscription}` });
await rejects("portal assign: already assigned", async () => {
  await customer.customerPortal.seats.assignSeat({ subscription_id: ids.subscription, email: cfg.emails.invitee });
}, { cls: "CustomerPortalSeatsAssignSeat400Error", status: 400, error: "SeatAlreadyAssigned", detail: /^Seat already assigned to customer / });
await rejects("portal assign: order not paid", async () => {
  await customer.customerPortal.seats.assignSeat({ order_id: ids.pendingOrder, email: "x@example.com" });
}, { cls: "CustomerPortalSeatsAssignSeat400Error", status: 400, error: "SeatNotAvailable", detail: "Order must be paid before assigning seats" });
await rejects("portal assign: someone else's subscription", async () => {
  await customer.customerPortal.seats.assignSeat({ subscription_id: ids.otherCustomerSubscription, email: "x@example.com" });
}, { cls: "CustomerPortalSeatsAssignSeat404Error", status: 404, error: "ResourceNotFound", detail: "Subscription not found" });
await rejects("portal assign: unknown customer_id", async () => {
  await customer.customerPortal.seats.assignSeat({ subscription_id: ids.subscription, customer_id: unknownID });
}, { cls: "CustomerPortalSeatsAssignSeat404Error", status: 404, error: "CustomerNotFound" });
await rejects("portal assign: seat-based pricing off", async () => {
  await disabledCustomer.customerPortal.seats.assignSeat({ subscription_id: ids.disabledSubscription, email: "x@example.com" });
}, { cls: "CustomerPortalSeatsAssignSeat403Error", status: 403, error: "FeatureNotEnabled", detail: featureOff });
await rejects("portal assign: external_member_id of a member with another email", async () => {
  await customer.customerPortal.seats.assignSeat({ subscription_id: ids.subscription, external_member_id: cfg.externalMemberID, email: "someone-else@example.com" });
}, { cls: "CustomerPortalSeatsAssignSeat400Error", status: 400, error: "MemberEmailMismatch",
  detail: `Member with external_member_id '${cfg.externalMemberID}' exists but has a different email than 'someone-else@example.com'` });
await rejects("portal assign (member model): unknown customer_id", async () => {
  await memberModelCustomer.customerPortal.seats.assignSeat({ subscription_id: ids.memberSubscription, customer_id: unknownID });
}, { cls: "CustomerPortalSeatsAssignSeat400Error", status: 400, error: "InvalidSeatAssignmentRequest",
  detail: "Customer not found for the provided customer_id or external_customer_id." });
await rejects("portal assign: member without a billing role", async () => {
  await memberOnly.customerPortal.seats.assignSeat({ subscription_id: ids.subscription, email: "x@example.com" });
}, { cls: "CustomerPortalSeatsAssignSeat403Error", status: 403, error: "NotPermitted", bodyType: T.notPermitted, detail: "Only owners and billing managers can access billing features." });
await rejects("portal assign: bad token", async () => {
  await anonymous.customerPortal.seats.assignSeat({ subscription_id: ids.subscription, email: "x@example.com" });
}, { cls: "CustomerPortalSeatsAssignSeat401Error", status: 401, error: "Unauthorized", bodyType: T.unauthorized });
await rejects("portal assign: invalid body", async () => {
  await customer.customerPortal.seats.assignSeat({ subscription_id: ids.subscription, order_id: ids.order, email: "not an address" });
}, { cls: "HTTPValidationError", status: 422, bodyType: T.validation });
await rejects("portal list: someone else's subscription", async () => {
  await customer.customerPortal.seats.listSeats({ subscription_id: ids.otherCustomerSubscription });
}, { cls: "CustomerPortalSeatsListSeats404Error", status: 404, error: "ResourceNotFound", detail: "Subscription not found" });
await rejects("portal list: neither id", async () => {
  await customer.customerPortal.seats.listSeats({});
}, { cls: "PolarClientError", status: 400, error: "BadRequest", bodyType: T.badRequest, detail: "Either subscription_id or order_id must be provided" });
await rejects("portal list: malformed id", async () => {
  await customer.customerPortal.seats.listSeats({ subscription_id: "nope" });
}, { cls: "HTTPValidationError", status: 422, bodyType: T.validation });
await rejects("portal list: bad token", async () => {
  await anonymous.customerPortal.seats.listSeats({ subscription_id: ids.subscription });
}, { cls: "CustomerPortalSeatsListSeats401Error", status: 401, error: "Unauthorized" });
await rejects("portal list: seat-based pricing off", async () => {
  await disabledCustomer.customerPortal.seats.listSeats({ subscription_id: ids.disabledSubscription });
}, { cls: "CustomerPortalSeatsListSeats403Error", status: 403, error: "FeatureNotEnabled", detail: featureOff });
await rejects("portal resend: not pending", async () => {
  await customer.customerPortal.seats.resendInvitation(pending.id);
}, { cls: "CustomerPortalSeatsResendInvitation400Error", status: 400, error: "SeatNotPending", detail: "Seat is not in pending status" });
await rejects("portal resend: unknown seat", async () => {
  await customer.customerPortal.seats.resendInvitation(unknownID);
}, { cls: "CustomerPortalSeatsResendInvitation404Error", status: 404, error: "ResourceNotFound", detail: "Seat not found" });
await rejects("portal resend: member without a billing role", async () => {
  await memberOnly.customerPortal.seats.resendInvitation(pending.id);
}, { cls: "CustomerPortalSeatsResendInvitation403Error", status: 403, error: "NotPermitted" });
await rejects("portal resend: bad token", async () => {
  await anonymous.customerPortal.seats.resendInvitation(pending.id);
}, { cls: "CustomerPortalSeatsResendInvitation401Error", status: 401, error: "Unauthorized" });
await rejects("portal resend: malformed id", async () => {
  await customer.customerPortal.seats.resendInvitation("nope");
}, { cls: "HTTPValidationError", status: 422, bodyType: T.validation });
await rejects("portal resend: seat-based pricing off", async () => {
  await disabledCustomer.customerPortal.seats.resendInvitation(ids.disabledSeat);
}, { cls: "CustomerPortalSeatsResendInvitation403Error", status: 403, error: "FeatureNotEnabled", detail: featureOff });
await rejects("portal revoke: unknown seat", async () => {
  await customer.customerPortal.seats.revokeSeat(unknownID);
}, { cls: "CustomerPortalSeatsRevokeSeat404Error", status: 404, error: "ResourceNotFound", detail: "Seat not found" });
await rejects("portal revoke: member without a billing role", async () => {
  await memberOnly.customerPortal.seats.revokeSeat(pending.id);
}, { cls: "CustomerPortalSeatsRevokeSeat403Error", status: 403, error: "NotPermitted" });
await rejects("portal revoke: bad token", async () => {
  await anonymous.customerPortal.seats.revokeSeat(pending.id);
}, { cls: "CustomerPortalSeatsRevokeSeat401Error", status: 401, error: "Unauthorized" });
await rejects("portal revoke: malformed id", async () => {
  await customer.customerPortal.seats.revokeSeat("nope");
}, { cls: "HTTPValidationError", status: 422, bodyType: T.validation });
await rejects("portal revoke: seat-based pricing off", async () => {
  await disabledCustomer.customerPortal.seats.revokeSeat(ids.disabledSeat);
}, { cls: "CustomerPortalSeatsRevokeSeat403Error", status: 403, error: "FeatureNotEnabled", detail: featureOff });
await step("portal revoke of a revoked seat, seat-based pricing off: unchanged, as Polar's revoke_seat", async () => {
  const seat = await disabledCustomer.customerPortal.seats.revokeSeat(ids.disabledRevokedSeat);
  typed(seat, T.portalRevoke, "revokeSeat");
  expect(seat.id === ids.disabledRevokedSeat && seat.status === "revoked", `seat ${seat.id} is ${seat.status}`);
});
await rejects("claimed subscriptions: bad token", async () => {
  await anonymous.customerPortal.seats.listClaimedSubscriptions();
}, { cls: "CustomerPortalSeatsListClaimedSubscriptions401Error", status: 401, error: "Unauthorized" });
await rejects("claimed subscriptions: limit 0", async () => {
  await customer.customerPortal.seats.listClaimedSubscriptions({ limit: 0 });
}, { cls: "HTTPValidationError", status: 422, bodyType: T.validation });
await rejects("claim info: used token", async () => {
  await anonymous.customerSeats.getClaimInfo(invite.token);
}, { cls: "CustomerSeatsGetClaimInfo404Error", status: 404, error: "ResourceNotFound", detail: "Invalid or expired invitation token" });
await rejects("claim: used token", async () => {
  await anonymous.customerSeats.claimSeat({ invitation_token: invite.token });
}, { cls: "CustomerSeatsClaimSeat400Error", status: 400, error: "InvalidInvitationToken", detail: "Invalid or expired invitation token" });
let disabledInvite;
await rejects("claim info: seat-based pricing off", async () => {
  disabledInvite = await invitationToken(cfg.emails.disabled);
  await anonymous.customerSeats.getClaimInfo(disabledInvite.token);
}, { cls: "CustomerSeatsGetClaimInfo403Error", status: 403, error: "FeatureNotEnabled", detail: featureOff });
await rejects("claim: seat-based pricing off", async () => {
  await anonymous.customerSeats.claimSeat({ invitation_token: disabledInvite.token });
}, { cls: "CustomerSeatsClaimSeat403Error", status: 403, error: "FeatureNotEnabled", detail: featureOff });
await rejects("claim: no token", async () => {
  await anonymous.customerSeats.claimSeat({});
}, { cls: "HTTPValidationError", status: 422, bodyType: T.validation });

// ---- Organization API ----
let orgSeat, orgClaimed;
await step("org assign", async () => {
  orgSeat = await org.customerSeats.assignSeat({ subscription_id: ids.subscription, email: cfg.emails.orgInvitee, metadata: { via: "oat" } });
  typed(orgSeat, T.orgAssign, "assignSeat");
  expect(orgSeat.status === "pending", "not pending");
});
await step("org assign (immediate_claim, external_customer_id)", async () => {
  orgClaimed = await org.customerSeats.assignSeat({ order_id: ids.order, external_customer_id: cfg.externalCustomerID, immediate_claim: true });
  typed(orgClaimed, T.orgAssign, "assignSeat");
  expect(orgClaimed.status === "claimed" && orgClaimed.order_id === ids.order, "not claimed on the order");
});
await step("org list", async () => {
  const list = await orgRead.customerSeats.listSeats({ order_id: ids.order });
  typed(list, T.orgList, "listSeats");
  expect(list.seats.some((s) => s.id === orgClaimed.id), "seat missing");
});
await step("org resend", async () => {
  const seat = await org.customerSeats.resendInvitation(orgSeat.id);
  typed(seat, T.orgResend, "resendInvitation");
  expect(seat.status === "pending", "not pending");
});
await step("org revoke", async () => {
  const seat = await org.customerSeats.revokeSeat(orgSeat.id);
  typed(seat, T.orgRevoke, "revokeSeat");
  expect(seat.status === "revoked", "not revoked");
});
await rejects("org assign: another organization's subscription", async () => {
  await org.customerSeats.assignSeat({ subscription_id: ids.otherOrgSubscription, email: "x@example.com" });
}, { cls: "CustomerSeatsAssignSeat404Error", status: 404, error: "ResourceNotFound", detail: "Subscription not found" });
await rejects("org list: another organization's order", async () => {
  await otherOrg.customerSeats.listSeats({ order_id: ids.order });
}, { cls: "CustomerSeatsListSeats404Error", status: 404, error: "ResourceNotFound", detail: "Order not found" });
await rejects("org revoke: another organization's seat", async () => {
  await otherOrg.customerSeats.revokeSeat(orgClaimed.id);
}, { cls: "CustomerSeatsRevokeSeat404Error", status: 404, error: "ResourceNotFound", detail: "Seat not found" });
await rejects("org resend: another organization's seat", async () => {
  await otherOrg.customerSeats.resendInvitation(orgClaimed.id);
}, { cls: "CustomerSeatsResendInvitation404Error", status: 404, error: "ResourceNotFound", detail: "Seat not found" });
await rejects("org assign: read-only token", async () => {
  await orgRead.customerSeats.assignSeat({ subscription_id: ids.subscription, email: "x@example.com" });
}, { cls: "CustomerSeatsAssignSeat403Error", status: 403 });
await rejects("org revoke: read-only token", async () => {
  await orgRead.customerSeats.revokeSeat(orgClaimed.id);
}, { cls: "CustomerSeatsRevokeSeat403Error", status: 403 });
await rejects("org resend: read-only token", async () => {
  await orgRead.customerSeats.resendInvitation(orgClaimed.id);
}, { cls: "CustomerSeatsResendInvitation403Error", status: 403 });
await rejects("org assign: full pool", async () => {
  await org.customerSeats.assignSeat({ subscription_id: ids.fullSubscription, email: "late@example.com" });
}, { cls: "CustomerSeatsAssignSeat400Error", status: 400, error: "SeatNotAvailable" });
await rejects("org assign: unknown customer", async () => {
  await org.customerSeats.assignSeat({ subscription_id: ids.subscription, customer_id: unknownID });
}, { cls: "CustomerSeatsAssignSeat404Error", status: 404, error: "CustomerNotFound" });
await rejects("org assign: bad token", async () => {
  await anonymous.customerSeats.assignSeat({ subscription_id: ids.subscription, email: "x@example.com" });
}, { cls: "CustomerSeatsAssignSeat401Error", status: 401, error: "Unauthorized" });
await rejects("org assign: customer session on the org API", async () => {
  await customer.customerSeats.assignSeat({ subscription_id: ids.subscription, email: "x@example.com" });
}, { cls: "CustomerSeatsAssignSeat401Error", status: 401, error: "Unauthorized" });
await rejects("org assign: invalid body", async () => {
  await org.customerSeats.assignSeat({ subscription_id: ids.subscription, email: "x@example.com", customer_id: unknownID });
}, { cls: "HTTPValidationError", status: 422, bodyType: T.validation });
await rejects("org list: bad token", async () => {
  await anonymous.customerSeats.listSeats({ subscription_id: ids.subscription });
}, { cls: "CustomerSeatsListSeats401Error", status: 401, error: "Unauthorized" });
await rejects("org list: seat-based pricing off", async () => {
  await disabledOrg.customerSeats.listSeats({ subscription_id: ids.disabledSubscription });
}, { cls: "CustomerSeatsListSeats403Error", status: 403, error: "FeatureNotEnabled", detail: featureOff });
await rejects("org list: neither id", async () => {
  await org.customerSeats.listSeats({});
}, { cls: "PolarClientError", status: 400, error: "BadRequest", bodyType: T.badRequest, detail: "Either subscription_id or order_id must be provided" });
await rejects("org list: malformed id", async () => {
  await org.customerSeats.listSeats({ order_id: "nope" });
}, { cls: "HTTPValidationError", status: 422, bodyType: T.validation });
await rejects("org assign: seat-based pricing off", async () => {
  await disabledOrg.customerSeats.assignSeat({ subscription_id: ids.disabledSubscription, email: "x@example.com" });
}, { cls: "CustomerSeatsAssignSeat403Error", status: 403, error: "FeatureNotEnabled", detail: featureOff });
await rejects("org resend: seat-based pricing off", async () => {
  await disabledOrg.customerSeats.resendInvitation(ids.disabledSeat);
}, { cls: "CustomerSeatsResendInvitation403Error", status: 403, error: "FeatureNotEnabled", detail: featureOff });
await rejects("org revoke: seat-based pricing off", async () => {
  await disabledOrg.customerSeats.revokeSeat(ids.disabledSeat);
}, { cls: "CustomerSeatsRevokeSeat403Error", status: 403, error: "FeatureNotEnabled", detail: featureOff });
await rejects("org revoke of a revoked seat, seat-based pricing off: the endpoint checks first, as Polar's", async () => {
  await disabledOrg.customerSeats.revokeSeat(ids.disabledRevokedSeat);
}, { cls: "CustomerSeatsRevokeSeat403Error", status: 403, error: "FeatureNotEnabled", detail: featureOff });
await rejects("org resend: not pending", async () => {
  await org.customerSeats.resendInvitation(orgClaimed.id);
}, { cls: "CustomerSeatsResendInvitation400Error", status: 400, error: "SeatNotPending" });
await rejects("org resend: unknown seat", async () => {
  await org.customerSeats.resendInvitation(unknownID);
}, { cls: "CustomerSeatsResendInvitation404Error", status: 404, error: "ResourceNotFound", detail: "Seat not found" });
await rejects("org resend: malformed id", async () => {
  await org.customerSeats.resendInvitation("nope");
}, { cls: "HTTPValidationError", status: 422, bodyType: T.validation });
await rejects("org resend: bad token", async () => {
  await anonymous.customerSeats.resendInvitation(orgClaimed.id);
}, { cls: "CustomerSeatsResendInvitation401Error", status: 401, error: "Unauthorized" });
await rejects("org revoke: bad token", async () => {
  await anonymous.customerSeats.revokeSeat(orgClaimed.id);
}, { cls: "CustomerSeatsRevokeSeat401Error", status: 401, error: "Unauthorized" });
await rejects("org revoke: malformed id", async () => {
  await org.customerSeats.revokeSeat("nope");
}, { cls: "HTTPValidationError", status: 422, bodyType: T.validation });

// ---- The member model: the seat carries its Member ----
let memberSeat;
await step("org assign (member model, external_member_id)", async () => {
  memberSeat = await memberOrg.customerSeats.assignSeat({
    subscription_id: ids.memberSubscription, email: cfg.emails.member, external_member_id: "emp-7",
  });
  typed(memberSeat, T.orgAssign, "assignSeat");
  const m = memberSeat.member;
  expect(m && m.id === memberSeat.member_id && m.email === cfg.emails.member && m.external_id === "emp-7" && m.role === "member",
    `member ${JSON.stringify(m)}`);
  expect(memberSeat.email === cfg.emails.member && memberSeat.customer_email === cfg.emails.member, "seat email");
});
await step("claim (member model) and the member's claimed subscriptions", async () => {
  const { token } = await invitationToken(cfg.emails.member);
  const info = await anonymous.customerSeats.getClaimInfo(token);
  typed(info, T.claimInfo, "getClaimInfo");
  const out = await anonymous.customerSeats.claimSeat({ invitation_token: token });
  typed(out, T.claim, "claimSeat");
  expect(out.seat.member?.id === memberSeat.member_id, "claimed seat lost its member");
  const member = createPolar({ ...base, accessToken: out.customer_session_token });
  const page = await member.customerPortal.seats.listClaimedSubscriptions();
  typed(page, T.portalClaimed, "listClaimedSubscriptions");
  expect(page.items.length === 1 && page.items[0].id === ids.memberSubscription, "the member's subscription");
  expect(page.items[0].product.recurring_interval === "year", "product interval");
});
await rejects("org assign (member model): unknown member_id", async () => {
  await memberOrg.customerSeats.assignSeat({ subscription_id: ids.memberSubscription, member_id: unknownID });
}, { cls: "CustomerSeatsAssignSeat404Error", status: 404, error: "MemberNotFound", detail: `Member not found: ${unknownID}` });
await rejects("org assign (member model): member_id with email", async () => {
  await memberOrg.customerSeats.assignSeat({ subscription_id: ids.memberSubscription, member_id: unknownID, email: "x@example.com" });
}, { cls: "HTTPValidationError", status: 422, bodyType: T.validation });

// ---- Webhooks: every seat event above, verified and typed ----
await step("webhooks", async () => {
  // assigned: pending, orgSeat; claimed: claimedNow, pending (claim), orgClaimed;
  // revoked: claimedNow, orgSeat.
  const want = [
    ["customer_seat.assigned", pending.id], ["customer_seat.assigned", orgSeat.id],
    ["customer_seat.claimed", claimedNow.id], ["customer_seat.claimed", pending.id], ["customer_seat.claimed", orgClaimed.id],
    ["customer_seat.revoked", claimedNow.id], ["customer_seat.revoked", orgSeat.id],
  ];
  const deadline = Date.now() + 30000;
  const has = ([type, id]) => received.some((r) => r.event.type === type && r.event.data.id === id);
  while (Date.now() < deadline && !want.every(has)) await new Promise((r) => setTimeout(r, 100));
  const missing = want.filter((w) => !has(w));
  expect(missing.length === 0, `webhooks not received: ${JSON.stringify(missing)}`);
  expect(rejected.length === 0, `validateEvent rejected deliveries: ${rejected.join("; ")}`);
  for (const r of received) typed(r.event, T.webhook, `webhook ${r.event.type}`);
  const idsSeen = new Set(received.map((r) => r.id));
  expect(idsSeen.size === received.length, "a webhook-id was delivered twice");
  return { received: received.length };
});

receiver.close();
console.log(JSON.stringify({ summary: true, steps: results.length, failed }));
process.exit(failed === 0 ? 0 : 1);
