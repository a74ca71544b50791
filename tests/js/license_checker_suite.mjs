// The official 10Duke browser client, `@10duke/web-client-pkce`'s LicenseChecker (1.1.0, pinned in
// package.json), consuming and releasing a license through a running Leasehold's `/authz/`.
//
// The package is used as published: nothing of it is patched or re-implemented. It is a browser
// library, so this file gives it the browser it expects and no more: `window.crypto` (WebCrypto,
// which jose-jwe-jws looks up when it loads) and a `fetch` that behaves like a browser's for a
// page on another origin (CORS preflight for the `Authorization` header, `Access-Control-Allow-*`
// checked on every answer), so a server the client could not reach from a real page fails here.
//
// Usage: node license_checker_suite.mjs <server URL> <consumer API key> <item> <unlicensed item>
//   or the environment LEASEHOLD_URL, LEASEHOLD_API_KEY, LEASEHOLD_ITEM, LEASEHOLD_MISSING_ITEM.
// Optional: LEASEHOLD_LICENSE_ID (the `lic` every grant must carry) and LEASEHOLD_ADMIN_TOKEN
// (then the live leases of that license are read from the admin API after each step).
// The license must have exactly one seat with `hw` as its session anchor.
// Exit status 0 when every check holds; 1 with a FAIL line naming the first that did not.

import { webcrypto } from "node:crypto";
import { createServer } from "node:http";
import { createRequire } from "node:module";

// ---- the browser environment ------------------------------------------------------------

if (globalThis.crypto === undefined) {
  // Node 18 has WebCrypto only as a module; browsers (and Node 19+) have it as a global.
  globalThis.crypto = webcrypto;
}
globalThis.window = globalThis;

/** The origin of the (imaginary) web page the LicenseChecker runs in: never the server's. */
const PAGE_ORIGIN = "http://licensed-app.localhost:3000";

const networkFetch = globalThis.fetch;
if (typeof networkFetch !== "function") {
  fail(`this Node.js (${process.version}) has no fetch; Node 18 or newer is needed`);
}

/** Request headers a page may send cross-origin without asking first (Fetch standard). */
function isSafelisted(name, value) {
  const lower = name.toLowerCase();
  if (["accept", "accept-language", "content-language"].includes(lower)) return true;
  if (lower !== "content-type") return false;
  const essence = value.split(";")[0].trim().toLowerCase();
  return ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"].includes(essence);
}

function listed(headerValue) {
  return (headerValue ?? "")
    .split(",")
    .map((v) => v.trim().toLowerCase())
    .filter((v) => v !== "");
}

/** The fetch of a page at PAGE_ORIGIN: the CORS checks a browser makes before it lets the
 * page see an answer from another origin (no credentials mode, as the LicenseChecker uses). */
async function browserFetch(input, init = {}) {
  const url = new URL(input.toString());
  const method = (init.method ?? "GET").toUpperCase();
  const headers = new Headers(init.headers);
  const unsafe = [...headers.entries()]
    .filter(([name, value]) => !isSafelisted(name, value))
    .map(([name]) => name.toLowerCase())
    .sort();
  const crossOrigin = url.origin !== PAGE_ORIGIN;
  if (crossOrigin && (!["GET", "HEAD", "POST"].includes(method) || unsafe.length > 0)) {
    const preflight = await networkFetch(url, {
      method: "OPTIONS",
      headers: {
        Origin: PAGE_ORIGIN,
        "Access-Control-Request-Method": method,
        ...(unsafe.length > 0 ? { "Access-Control-Request-Headers": unsafe.join(",") } : {}),
      },
    });
    await preflight.arrayBuffer();
    const where = `CORS preflight OPTIONS ${url.pathname}`;
    if (preflight.status < 200 || preflight.status > 299) {
      throw new TypeError(`${where}: status ${preflight.status}, a browser stops here`);
    }
    checkAllowOrigin(preflight, where);
    const methods = listed(preflight.headers.get("access-control-allow-methods"));
    if (!["GET", "HEAD", "POST"].includes(method) && !methods.includes(method.toLowerCase()) && !methods.includes("*")) {
      throw new TypeError(`${where}: method ${method} not allowed (${methods})`);
    }
    const allowed = listed(preflight.headers.get("access-control-allow-headers"));
    for (const name of unsafe) {
      // `*` never covers Authorization: it has to be named.
      if (!allowed.includes(name) && !(allowed.includes("*") && name !== "authorization")) {
        throw new TypeError(`${where}: header ${name} not allowed (${allowed})`);
      }
    }
  }
  if (crossOrigin) headers.set("Origin", PAGE_ORIGIN);
  const response = await networkFetch(url, { ...init, headers });
  if (crossOrigin) checkAllowOrigin(response, `${method} ${url.pathname}`);
  return response;
}

function checkAllowOrigin(response, where) {
  const allowOrigin = response.headers.get("access-control-allow-origin");
  if (allowOrigin !== "*" && allowOrigin !== PAGE_ORIGIN) {
    throw new TypeError(`${where}: Access-Control-Allow-Origin is ${allowOrigin}, a browser hides the answer`);
  }
}

globalThis.fetch = browserFetch;

// The package loads only now, into the environment above.
const require = createRequire(import.meta.url);
const { LicenseChecker } = require("@10duke/web-client-pkce");
const { version: packageVersion } = require("@10duke/web-client-pkce/package.json");

// ---- the suite ---------------------------------------------------------------------------

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}

function check(condition, message, detail) {
  if (!condition) fail(detail === undefined ? message : `${message}: ${JSON.stringify(detail)}`);
}

function ok(message) {
  console.log(`ok - ${message}`);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const [argUrl, argKey, argItem, argMissing] = process.argv.slice(2);
const serverUrl = (argUrl ?? process.env.LEASEHOLD_URL ?? "").replace(/\/+$/, "");
const apiKey = argKey ?? process.env.LEASEHOLD_API_KEY;
const item = argItem ?? process.env.LEASEHOLD_ITEM;
const missingItem = argMissing ?? process.env.LEASEHOLD_MISSING_ITEM;
const licenseId = process.env.LEASEHOLD_LICENSE_ID;
const adminToken = process.env.LEASEHOLD_ADMIN_TOKEN;
if (!serverUrl || !apiKey || !item || !missingItem) {
  fail("usage: node license_checker_suite.mjs <server URL> <consumer API key> <item> <unlicensed item>");
}
check(packageVersion === "1.1.0", "the suite is written for @10duke/web-client-pkce 1.1.0", packageVersion);
console.log(`# @10duke/web-client-pkce ${packageVersion} on Node.js ${process.version} against ${serverUrl}`);

const authzUri = new URL(`${serverUrl}/authz/`);
const jwksUri = new URL(`${serverUrl}/.well-known/jwks.json`);
// Leasehold authenticates consumers by API key as a bearer token: that is the "access token".
const laptop = new LicenseChecker(apiKey, authzUri, jwksUri, "laptop-7f3a+Zq/w==");
const desktop = new LicenseChecker(apiKey, authzUri, jwksUri, "desktop-19c2");

/** Live leases of the license as the admin API reports them, or null without admin access. */
async function liveLeases() {
  if (!adminToken || !licenseId) return null;
  const response = await networkFetch(`${serverUrl}/admin/licenses/${licenseId}/leases`, {
    headers: { Authorization: `Bearer ${adminToken}` },
  });
  check(response.ok, `GET /admin/licenses/${licenseId}/leases answers 200`, response.status);
  const body = await response.json();
  return Array.isArray(body) ? body : body.items;
}

async function expectLiveLeases(expected, when) {
  const leases = await liveLeases();
  if (leases === null) return;
  check(Array.isArray(leases), "the admin API lists leases", leases);
  check(
    leases.length === expected.length && expected.every((id) => leases.some((l) => l.id === id)),
    `live leases ${when} are ${JSON.stringify(expected)}`,
    leases,
  );
  ok(`the admin API shows ${expected.length} live lease(s) ${when}`);
}

async function consume(checker, name) {
  try {
    return await checker.consumeLicense(name);
  } catch (e) {
    fail(`consumeLicense(${JSON.stringify(name)}) threw ${e && e.stack ? e.stack : e}`);
  }
}

async function release(checker, leaseId) {
  try {
    return await checker.releaseLicense(leaseId);
  } catch (e) {
    fail(`releaseLicense(${leaseId}) threw ${e && e.stack ? e.stack : e}`);
  }
}

function checkGrant(result, hw, what) {
  check(result.hasLicense(item), `${what}: the token grants ${item}`, result);
  check(UUID.test(result.jti ?? ""), `${what}: jti is a lease id (UUID)`, result.jti);
  check(result.hw === hw, `${what}: hw is the checker's hardware id`, result);
  check(typeof result.sub === "string" && result.sub !== "", `${what}: sub names the consumer`, result);
  check(typeof result.iss === "string" && result.iss !== "", `${what}: iss names the issuer`, result);
  if (licenseId) check(result.lic === licenseId, `${what}: lic is the license`, result);
  const now = Date.now() / 1000;
  check(Number.isInteger(result.iat) && Math.abs(result.iat - now) < 600, `${what}: iat is now`, result);
  check(result.exp > now && result.exp > result.iat, `${what}: exp is in the future`, result);
  check(result.rfr >= result.iat && result.rfr <= result.exp, `${what}: rfr lies between iat and exp`, result);
  check(Object.keys(result).every((k) => !k.endsWith("_errorCode")), `${what}: no error claims`, result);
}

function checkDenial(result, name, codes, what) {
  const code = result[`${name}_errorCode`];
  check(!result.hasLicense(name), `${what}: ${name} is not granted`, result);
  check(codes.includes(code), `${what}: ${name}_errorCode is one of ${codes}`, result);
  check(result[`${name}_errorKey`] === code, `${what}: ${name}_errorKey matches the code`, result);
  for (const field of ["errorMessage", "errorTechnical"]) {
    check(typeof result[`${name}_${field}`] === "string", `${what}: ${name}_${field} is given`, result);
  }
  check(result.jti === undefined, `${what}: a denial names no lease`, result);
}

await expectLiveLeases([], "before the first consume");

// 1. Consume: a signed token, verified by the client against the server's JWKS.
const first = await consume(laptop, item);
checkGrant(first, "laptop-7f3a+Zq/w==", "consume from the laptop");
ok(`consumeLicense(${JSON.stringify(item)}) is granted, lease ${first.jti}`);
await expectLiveLeases([first.jti], "after the consume");

// 2. The only seat is taken: another machine is refused, with a signed denial.
const refused = await consume(desktop, item);
checkDenial(refused, item, ["maxConcurrentSessionsExceed", "licenseQuotaExceeded"], "consume from a second machine");
ok(`a second machine is refused while the seat is held (${refused[`${item}_errorCode`]})`);

// 3. An item with no license: a signed denial with its error code.
const missing = await consume(laptop, missingItem);
checkDenial(missing, missingItem, ["noLicenseFound"], "consume of an unlicensed item");
ok(`consumeLicense(${JSON.stringify(missingItem)}) is denied with noLicenseFound`);

// 4. The client really verifies signatures: against a key set that is not the server's, the
// same kind of answer is rejected.
const strangerKeys = await crypto.subtle.generateKey(
  { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
  true,
  ["sign", "verify"],
);
const strangerJwk = await crypto.subtle.exportKey("jwk", strangerKeys.publicKey);
const strangerJwks = createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "application/json", "Access-Control-Allow-Origin": "*" });
  res.end(JSON.stringify({ keys: [{ ...strangerJwk, kid: "stranger", use: "sig", alg: "RS256" }] }));
});
await new Promise((resolve) => strangerJwks.listen(0, "127.0.0.1", resolve));
const strangerUri = new URL(`http://127.0.0.1:${strangerJwks.address().port}/jwks.json`);
const fooled = new LicenseChecker(apiKey, authzUri, strangerUri, "laptop-7f3a+Zq/w==");
let rejection = null;
try {
  await fooled.consumeLicense(missingItem);
} catch (e) {
  rejection = e;
}
strangerJwks.close();
check(
  // (`instanceof LicenseCheckError` does not hold: the package is compiled to ES5, where a
  // subclass of Error loses its prototype; its `error` field is what it documents.)
  rejection !== null && ["license_token_verification_failed", "invalid_license_token"].includes(rejection.error),
  "a token checked against another key set is rejected",
  rejection && { error: rejection.error, message: rejection.message },
);
ok("a token checked against a key set other than the server's is rejected");

// 5. Release (the client sends its hw along) frees the seat.
const released = await release(laptop, first.jti);
check(released.isReleased(first.jti), `releaseLicense(${first.jti}) answers true`, released);
ok(`releaseLicense(${first.jti}) is released`);
await expectLiveLeases([], "after the release");

// 6. A released lease id is never accepted again.
const again = await release(laptop, first.jti);
check(!again.isReleased(first.jti), "releasing the same lease again answers false", again);
ok("a second release of the same lease answers false");

// 7. The seat is free: the other machine now gets it, and gives it back.
const second = await consume(desktop, item);
checkGrant(second, "desktop-19c2", "consume from the second machine after the release");
check(second.jti !== first.jti, "the new lease has a new id", second);
ok(`the second machine now gets the seat, lease ${second.jti}`);
await expectLiveLeases([second.jti], "after the second machine's consume");
const releasedSecond = await release(desktop, second.jti);
check(releasedSecond.isReleased(second.jti), `releaseLicense(${second.jti}) answers true`, releasedSecond);
await expectLiveLeases([], "at the end");

console.log("web-client-pkce LicenseChecker suite: every check passed");
