// The customer-success console test (started by run.sh, after test.mjs, on the same local
// stack): builds accounts over simulated days with the stack's own command
// (`groundwork run-schedule ... --at`), then drives /ops/console in headless Chromium: a
// customer who is not staff is refused, a staff member signs in, finds the account the
// test made dormant and opens its activity trend. The dormant-account email reaches the
// owner once however often the schedule runs. A screenshot of the trend is kept.
//
//   node console.mjs <API base URL> <stack data dir> <groundwork binary> <artifacts dir>
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { check, launchChromium, ok, pageLogs, run, sleep, verificationToken } from "./support.mjs";

const TIMEOUT_MS = 120_000;
const DAY_MS = 86_400_000;
const [api, dataDir, bin, artifacts] = process.argv.slice(2);
if (!api || !dataDir || !bin || !artifacts) {
  console.error("usage: node console.mjs <API base URL> <stack data dir> <groundwork binary> <artifacts dir>");
  process.exit(2);
}
// run.sh lists this address in GROUNDWORK_STAFF_EMAILS.
export const STAFF = "staff-console@example.com";
const PASSWORD = "violet-anchor-trombone-47";

async function call(method, path, token, body) {
  const response = await fetch(`${api}${path}`, {
    method,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** Signs `email` up, verifies the address from the outbox, and returns an access token. */
async function verifiedUser(email) {
  let r = await call("POST", "/auth/signup", null, { email, password: PASSWORD });
  check(r.status === 202, `sign-up ${email}: 202`, r);
  r = await call("POST", "/auth/verify-email", null, { token: await verificationToken(dataDir, email) });
  check(r.status === 200, `${email} verified`, r);
  r = await call("POST", "/auth/login", null, { email, password: PASSWORD });
  check(r.status === 200, `${email} signed in`, r);
  return r.body.access_token;
}

/** Runs one schedule's job through the stack's command, as if at `atMs`. */
function runSchedule(name, atMs) {
  // Only the data directory: the command reads the same store and queues as the stack.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("GROUNDWORK_")));
  const at = new Date(atMs).toISOString().replace(/\.\d+Z$/, "Z");
  const out = execFileSync(bin, ["run-schedule", name, "--at", at], {
    env: { ...env, GROUNDWORK_DATA_DIR: dataDir, GROUNDWORK_LOG: "warn" },
    encoding: "utf8",
  });
  ok(out.trim());
}

/** The dormant-account emails sent to `email` so far. */
function dormantEmails(email) {
  const outbox = join(dataDir, "outbox");
  return readdirSync(outbox)
    .filter((n) => n.endsWith(".eml"))
    .map((n) => readFileSync(join(outbox, n), "utf8"))
    .filter((text) => new RegExp(`^To: .*${email.replace(/[.+]/g, "\\$&")}`, "mi").test(text) && /^Subject: .*(miss|quiet|dormant|while)/im.test(text));
}

async function main() {
  const customer = `quiet-owner-${Date.now()}@example.com`;
  const ownerToken = await verifiedUser(customer);
  let r = await call("POST", "/accounts", ownerToken, { name: "Quiet Co" });
  check(r.status === 201, "the customer creates Quiet Co", r);
  const quiet = r.body.id;
  r = await call("POST", "/accounts", ownerToken, { name: "Busy Co" });
  const busy = r.body.id;
  r = await call("POST", `/accounts/${busy}/events`, ownerToken, {
    events: [{ name: "report.exported" }, { name: "report.exported" }, { name: "dashboard.viewed" }],
  });
  check(r.status === 202, "Busy Co records three product events", r);
  const staffToken = await verifiedUser(STAFF);

  // Day 1: both active, Busy Co with its events; day 10: both at risk; day 31: dormant.
  const now = Date.now();
  for (const day of [1, 10, 31]) runSchedule("account-health-rollup", now + day * DAY_MS);
  runSchedule("dormant-accounts", now + 31 * DAY_MS + 60_000);
  runSchedule("dormant-accounts", now + 32 * DAY_MS);

  r = await call("GET", "/ops/accounts?health=dormant&limit=200", ownerToken);
  check(r.status === 403 && r.body.code === "not_staff", "a customer reading /ops/accounts: 403 not_staff", r);
  r = await call("GET", "/ops/accounts?health=dormant&limit=200", staffToken);
  const dormant = r.body?.accounts?.filter((a) => a.account_id === quiet || a.account_id === busy) ?? [];
  check(r.status === 200 && dormant.length === 2, "/ops/accounts?health=dormant lists both accounts for staff", r);

  const context = await launchChromium();
  const page = await context.newPage();
  const violations = [];
  page.on("console", (m) => {
    pageLogs.push(`console.${m.type()}: ${m.text()}`);
    if (/Content Security Policy/i.test(m.text())) violations.push(m.text());
  });
  page.on("pageerror", (e) => pageLogs.push(`page error: ${e.message}`));
  await page.goto(`${api}/ops/console`);
  await page.waitForSelector("#password-form", { state: "visible" });
  ok("the console asks to sign in");

  await page.fill("#email", customer);
  await page.fill("#password", PASSWORD);
  await page.click("#password-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("sign-in-error").textContent.length > 0);
  const refusal = await page.textContent("#sign-in-error");
  check(refusal.includes("GROUNDWORK_STAFF_EMAILS") && !(await page.isVisible("#accounts")), "a customer who is not staff is refused", refusal);

  await page.fill("#email", STAFF);
  await page.fill("#password", PASSWORD);
  await page.click("#password-form button[type=submit]");
  await page.waitForSelector(`tr[data-account-id="${quiet}"]`);
  const row = page.locator(`tr[data-account-id="${quiet}"]`);
  check((await row.locator(".status").textContent()) === "dormant", "staff see Quiet Co as dormant", await row.textContent());

  await page.selectOption("#filter-health", "active");
  await page.waitForSelector(`tr[data-account-id="${quiet}"]`, { state: "detached" });
  ok("filtering by health narrows the table");
  await page.selectOption("#filter-health", "dormant");
  await page.waitForSelector(`tr[data-account-id="${busy}"]`);

  await page.click(`tr[data-account-id="${busy}"]`);
  await page.waitForSelector("#trend-chart circle");
  const points = await page.$$eval("#trend-chart circle", (cs) => cs.map((c) => c.getAttribute("data-status")));
  check(points.join(" ") === "active at_risk dormant", "Busy Co's trend: active, at risk, then dormant", points);
  const title = await page.textContent("#detail-title");
  check(title === "Busy Co", "the trend is Busy Co's", title);
  check(violations.length === 0, "no Content Security Policy violation", violations);

  mkdirSync(artifacts, { recursive: true });
  const shot = join(artifacts, "console.png");
  await page.screenshot({ path: shot, fullPage: true });
  ok(`screenshot kept: ${shot}`);

  // The stack's email consumer sends what the command queued; give it a few seconds.
  let sent = dormantEmails(customer).length;
  for (let i = 0; i < 100 && sent < 2; i++) {
    await sleep(100);
    sent = dormantEmails(customer).length;
  }
  await sleep(1000);
  sent = dormantEmails(customer).length;
  check(sent === 2, "the owner got one dormant-account email per account, once", sent);
}

await run("console test", TIMEOUT_MS, main);
