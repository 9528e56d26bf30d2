// The browser test (started by run.sh): serves the test page from two loopback origins, one
// the API allows (GROUNDWORK_CORS_ORIGINS) and one it does not, and drives it in headless
// Chromium through a whole browser session against the running local stack. Nothing is
// mocked: real CORS, real cookies, real token expiry.
//
//   node test.mjs <API base URL> <allowed page port> <other page port> <stack data dir>
//
// Prints one line per step; exits non-zero at the first failure, or after TIMEOUT_MS.
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { StepFailed, check, cleanups, launchChromium, note, ok, pageLogs, run, sleep, verificationToken as tokenIn } from "./support.mjs";

const TIMEOUT_MS = 180_000;
const [api, pagePort, otherPort, dataDir] = process.argv.slice(2);
if (!api || !pagePort || !otherPort || !dataDir) {
  console.error("usage: node test.mjs <API base URL> <allowed page port> <other page port> <stack data dir>");
  process.exit(2);
}
const here = fileURLToPath(new URL(".", import.meta.url));
const clientDir = join(here, "..", "..", "clients", "typescript");
const pageOrigin = `http://127.0.0.1:${pagePort}`;
const otherOrigin = `http://127.0.0.1:${otherPort}`;

// --- the page's servers ------------------------------------------------------------------
// `/` is the page; `/page/` its compiled module; `/client/` the built client; `/vendor/` the
// ESM build of openapi-fetch (the import map in index.html names them). Anything else is 404.
const roots = {
  "/page/": join(here, "dist"),
  "/client/": join(clientDir, "dist"),
  "/vendor/openapi-fetch/": join(clientDir, "node_modules", "openapi-fetch", "dist"),
};
const types = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".map": "application/json" };
function file(urlPath) {
  if (urlPath === "/") return join(here, "index.html");
  for (const [prefix, dir] of Object.entries(roots)) {
    if (!urlPath.startsWith(prefix)) continue;
    const path = normalize(join(dir, decodeURIComponent(urlPath.slice(prefix.length))));
    return path.startsWith(dir + sep) ? path : null;
  }
  return null;
}
function serve(port) {
  const server = createServer((req, res) => {
    const path = file(new URL(req.url ?? "/", "http://x").pathname);
    try {
      if (!path) throw new Error("not found");
      const body = readFileSync(path);
      res.writeHead(200, { "content-type": types[extname(path)] ?? "application/octet-stream", "cache-control": "no-store" });
      res.end(body);
    } catch {
      res.writeHead(404, { "content-type": "text/html" });
      res.end("<!doctype html><title>not found</title>");
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(port), "127.0.0.1", () => {
      cleanups.push(() => new Promise((done) => server.close(() => done())));
      resolve();
    });
  });
}

// --- helpers -----------------------------------------------------------------------------
const verificationToken = (email) => tokenIn(dataDir, email);

/** The `exp` claim of a JWT (seconds). */
function expiry(jwt) {
  return JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString()).exp;
}

async function status(path, token) {
  const response = await fetch(`${api}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return response.status;
}

// --- the flow ----------------------------------------------------------------------------
async function main() {
  await serve(pagePort);
  await serve(otherPort);
  ok(`page served from ${pageOrigin} (allowed) and ${otherOrigin} (not allowed); API at ${api}`);

  const context = await launchChromium();

  // Every API answer the pages get, in order (CORS preflights aside).
  const calls = [];
  context.on("response", (response) => {
    const request = response.request();
    if (request.url().startsWith(api) && request.method() !== "OPTIONS") {
      calls.push(`${request.method()} ${new URL(request.url()).pathname} ${response.status()}`);
    }
  });
  const refreshes = () => calls.filter((c) => c.startsWith("POST /auth/refresh ")).length;
  // Cookies are kept per host, not per origin: these are the API host's (and the pages').
  const refreshCookies = async () => (await context.cookies()).filter((c) => c.name === "gw_refresh" && c.domain === "127.0.0.1");

  async function open(origin) {
    const page = await context.newPage();
    page.on("console", (m) => pageLogs.push(`[${origin}] console.${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => pageLogs.push(`[${origin}] page error: ${e.message}`));
    await page.goto(`${origin}/?api=${encodeURIComponent(api)}`);
    await page.waitForFunction(() => "gw" in window, null, { timeout: 10_000 });
    return page;
  }
  const page = await open(pageOrigin);
  const gw = (name, ...args) => page.evaluate(([n, a]) => window.gw[n](...a), [name, args]);

  const email = `browser-${Date.now()}@example.com`;
  const password = "violet-anchor-trombone-47";

  let r = await gw("signup", email, password);
  check(r.status === 202, `sign-up ${email}: 202`, r);
  const token = await verificationToken(email);
  ok("verification link read from the outbox");
  r = await gw("verify", token);
  check(r.status === 200 && r.email_verified === true, "email verified: 200", r);

  r = await gw("login", email, password);
  check(r.status === 200 && typeof r.body?.access_token === "string", "login with the cookie session: 200", r);
  check(r.body.refresh_token == null, "the login answer holds no refresh token", Object.keys(r.body));
  const firstToken = await gw("accessToken");
  check(firstToken === r.body.access_token, "the access token is held in memory by the client", firstToken);

  const cookies = await refreshCookies();
  check(
    cookies.map((c) => c.path).sort().join(" ") === "/auth/logout /auth/refresh" &&
      cookies.every((c) => c.httpOnly && c.sameSite === "Strict" && !c.secure),
    "the browser keeps gw_refresh: HttpOnly, SameSite=Strict, paths /auth/refresh and /auth/logout",
    cookies.map(({ path, httpOnly, sameSite, secure }) => ({ path, httpOnly, sameSite, secure })),
  );
  const docCookie = await gw("documentCookie");
  check(!docCookie.includes("gw_refresh"), "document.cookie does not show it", docCookie);
  // Cookies ignore ports: a page of the same host at the cookie's path would see it, were it
  // not HttpOnly.
  const probe = await context.newPage();
  await probe.goto(`${pageOrigin}/auth/refresh`);
  const probeCookie = await probe.evaluate(() => document.cookie);
  await probe.close();
  check(!probeCookie.includes("gw_refresh"), "nor does document.cookie on a page at its path /auth/refresh", probeCookie);

  r = await gw("me");
  check(r.status === 200 && r.email === email, "GET /me (bearer): 200", r);
  r = await gw("createAccount", "Browser Test Co");
  check(r.status === 201 && r.name === "Browser Test Co" && r.role === "owner", "POST /accounts: 201, owner", r);

  // The access token's lifetime is 60 s (GROUNDWORK_ACCESS_TOKEN_TTL_SECS); the API also
  // allows clock skew past it. Wait until it really refuses the token.
  const exp = expiry(firstToken);
  const wait = Math.max(0, exp * 1000 - Date.now());
  note(`waiting ${Math.round(wait / 1000)} s for the access token to expire, then until the API refuses it (clock-skew leeway)`);
  await sleep(wait);
  let refused = false;
  for (let i = 0; i < 60 && !refused; i++) {
    refused = (await status("/me", firstToken)) === 401;
    if (!refused) await sleep(1000);
  }
  check(refused, `the API refuses the expired access token (${Math.round(Date.now() / 1000 - exp)} s after its exp)`, "still accepted");

  const cookieBefore = (await refreshCookies())[0]?.value;
  const before = refreshes();
  const mark = calls.length;
  const [me, accounts] = await page.evaluate(() => Promise.all([window.gw.me(), window.gw.listAccounts()]));
  check(me.status === 200 && me.email === email, "GET /me with the expired token: 200 after the automatic refresh", me);
  check(accounts.status === 200 && accounts.count === 1, "GET /accounts at the same time: 200", accounts);
  check(refreshes() - before === 1, "the two 401s shared one cookie refresh", calls.slice(mark));
  const seen = calls.slice(mark);
  const expected = ["GET /me 401", "GET /accounts 401", "POST /auth/refresh 200", "GET /me 200", "GET /accounts 200"];
  check(
    seen.length === expected.length &&
      expected.every((c) => seen.includes(c)) &&
      seen.findIndex((c) => c.endsWith(" 401")) < seen.indexOf("POST /auth/refresh 200") &&
      seen.indexOf("POST /auth/refresh 200") < Math.min(seen.indexOf("GET /me 200"), seen.indexOf("GET /accounts 200")),
    `each call got 401, then the refresh, then its retry: ${seen.join(", ")}`,
    seen,
  );
  const secondToken = await gw("accessToken");
  check(secondToken !== null && secondToken !== firstToken, "the access token changed", "unchanged");
  const cookieAfter = (await refreshCookies())[0]?.value;
  check(cookieAfter !== undefined && cookieAfter !== cookieBefore, "the refresh cookie rotated", "unchanged");

  // A reload empties the page's memory; the cookie resumes the session.
  await page.reload();
  await page.waitForFunction(() => "gw" in window, null, { timeout: 10_000 });
  check((await gw("accessToken")) === null, "after a reload the page holds no access token", "it does");
  check((await gw("resume")) === true, "refresh() resumes the session from the cookie", "it did not");
  const thirdToken = await gw("accessToken");
  check(thirdToken !== null && thirdToken !== secondToken, "with a new access token", thirdToken);
  r = await gw("me");
  check(r.status === 200 && r.email === email, "GET /me: 200", r);

  r = await gw("logout");
  check(r.status === 204, "logout: 204", r);
  check((await gw("accessToken")) === null, "the client forgot the access token", "still held");
  check((await refreshCookies()).length === 0, "the browser dropped the refresh cookie", await refreshCookies());
  r = await gw("refreshRaw");
  check(r.status === 401, "a further refresh is refused: 401", r);
  r = await gw("meWithToken", thirdToken);
  check(r.status === 401, "GET /me with the last access token: 401 (the session ended at once)", r);

  // The same page from an origin the API does not allow: the browser withholds the answers.
  const other = await open(otherOrigin);
  let thrown = null;
  try {
    await other.evaluate(([e, p]) => window.gw.login(e, p), [email, password]);
  } catch (e) {
    thrown = String(e.message ?? e);
  }
  check(thrown !== null && /Failed to fetch/i.test(thrown), `login from ${otherOrigin} throws (CORS)`, thrown ?? "it answered");
  check((await refreshCookies()).length === 0, "no refresh cookie was set", await refreshCookies());

  // The server's side of the CSRF rule, without a browser.
  const attempt = (headers) =>
    fetch(`${api}/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ email, password, refresh_token_delivery: "cookie" }),
    }).then(async (res) => ({ status: res.status, code: (await res.json()).code, cookie: res.headers.get("set-cookie") }));
  r = await attempt({ origin: otherOrigin, "x-requested-with": "test" });
  check(r.status === 403 && r.code === "csrf_origin" && !r.cookie, "a cookie login from that origin is refused: 403 csrf_origin", r);
  r = await attempt({ origin: pageOrigin });
  check(r.status === 403 && r.code === "csrf_header", "one without X-Requested-With: 403 csrf_header", r);

  // No session but this check's own: the browser's ended, the refused logins made none.
  const own = await fetch(`${api}/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password }),
  }).then((res) => res.json());
  const sessions = await fetch(`${api}/auth/sessions`, { headers: { authorization: `Bearer ${own.access_token}` } }).then((res) =>
    res.json(),
  );
  check(
    sessions.sessions?.length === 1 && sessions.sessions[0].current === true,
    "the user has no other live session",
    sessions,
  );
}

await run("browser test", TIMEOUT_MS, main);
