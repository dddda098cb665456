// Verifies one captured seatd webhook delivery with implementations other
// than seatd's own: the Standard Webhooks reference library and Polar's
// SDK. Input: a JSON file {body, headers, secret}. Prints one JSON object
// of results; exits 1 when an expectation fails.
import { readFileSync } from "node:fs";
import { Webhook } from "standardwebhooks";
import { webhooks } from "@polar-sh/sdk/2026-10";

const { body, headers, secret } = JSON.parse(readFileSync(process.argv[2], "utf8"));
const results = {};
const failures = [];

function expectOk(name, fn) {
  try {
    const out = fn();
    results[name] = "ok";
    return out;
  } catch (e) {
    results[name] = `error: ${e.message}`;
    failures.push(name);
  }
}
function expectReject(name, fn, message) {
  try {
    fn();
    results[name] = "accepted";
    failures.push(name);
  } catch (e) {
    results[name] = `rejected: ${e.message}`;
    if (message && !e.message.includes(message)) failures.push(name);
  }
}
async function expectOkAsync(name, fn) {
  try {
    const out = await fn();
    results[name] = "ok";
    return out;
  } catch (e) {
    results[name] = `error: ${e.name}: ${e.message}`;
    failures.push(name);
  }
}
async function expectRejectAsync(name, fn, message) {
  try {
    await fn();
    results[name] = "accepted";
    failures.push(name);
  } catch (e) {
    results[name] = `rejected: ${e.message}`;
    if (message && !e.message.includes(message)) failures.push(name);
  }
}

// Standard Webhooks, given the key the way Polar's server gives it:
// base64 of the secret's UTF-8 bytes (the library decodes it back).
const asPolarServer = new Webhook(Buffer.from(secret, "utf8").toString("base64"));
const payload = expectOk("standardwebhooks_base64_of_secret", () => asPolarServer.verify(body, headers));
// The same key, given raw.
expectOk("standardwebhooks_raw_secret", () => new Webhook(secret, { format: "raw" }).verify(body, headers));
// Handed the whsec_ secret as is, Standard Webhooks strips the prefix and
// base64-decodes the rest: that is not the key (same as with Polar).
expectReject("standardwebhooks_whsec_as_base64", () => new Webhook(secret).verify(body, headers));
// A changed body or a wrong secret fails.
expectReject("standardwebhooks_tampered_body", () => asPolarServer.verify(body.replace("customer_seat", "customer_seaT"), headers));

// Polar's SDK: validateEvent tries key (a), the secret's UTF-8 bytes,
// then key (b), the secret without whsec_ base64-decoded.
const event = await expectOkAsync("polar_validateEvent", () => webhooks.validateEvent(body, headers, secret));
if (event && (event.type !== JSON.parse(body).type || event.data.id !== JSON.parse(body).data.id)) {
  results.polar_validateEvent = `wrong payload ${JSON.stringify(event)}`;
  failures.push("polar_validateEvent");
}
await expectRejectAsync("polar_tampered_body", () => webhooks.validateEvent(body + " ", headers, secret), "No matching signature found");
await expectRejectAsync("polar_other_secret", () => webhooks.validateEvent(body, headers, secret.slice(0, -1) + "x"), "No matching signature found");
await expectRejectAsync("polar_missing_header", () => webhooks.validateEvent(body, { ...headers, "webhook-id": "" }, secret), "Missing required headers");
const old = String(Math.floor(Date.now() / 1000) - 3600);
await expectRejectAsync("polar_old_timestamp", () => webhooks.validateEvent(body, { ...headers, "webhook-timestamp": old }, secret), "Message timestamp too old");
// Key (b): a sender that signed with the base64-decoded secret (plain
// Standard Webhooks) is accepted by the SDK too; seatd signs with key (a).
const b64Secret = "whsec_" + Buffer.from("0123456789abcdef0123456789abcdef").toString("base64");
const plain = new Webhook(b64Secret);
const ts = new Date();
const plainHeaders = { "webhook-id": headers["webhook-id"], "webhook-timestamp": String(Math.floor(ts / 1000)), "webhook-signature": plain.sign(headers["webhook-id"], ts, body) };
await expectOkAsync("polar_key_b_plain_standard_webhooks", () => webhooks.validateEvent(body, plainHeaders, b64Secret));

results.type = payload ? payload.type : null;
console.log(JSON.stringify(results));
process.exit(failures.length ? 1 : 0);
