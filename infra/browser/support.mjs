// What the browser tests share: the step report (one line per step, the first failure ends
// the run), the clean-ups run at the end, Chromium started headless, and the verification
// link read from the local stack's mail outbox.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const CHROMIUM = "/usr/bin/chromium";
const started = Date.now();
let failed = false;
let finishing = false;
/** Run last to first when the test ends, however it ends. */
export const cleanups = [];
/** Console messages and errors of the pages, printed when a step fails. */
export const pageLogs = [];

function elapsed() {
  return `${String(Math.round((Date.now() - started) / 1000)).padStart(3)}s`;
}
export function ok(step) {
  console.log(`${elapsed()}  ok    ${step}`);
}
export function note(text) {
  console.log(`${elapsed()}        ${text}`);
}
export class StepFailed extends Error {}
export function check(condition, step, detail) {
  if (!condition) throw new StepFailed(`${step}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  ok(step);
}
async function finish(code) {
  if (finishing) return;
  finishing = true;
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  process.exit(code);
}
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs `main` within `timeoutMs`, reports how it ended, cleans up and exits. */
export async function run(name, timeoutMs, main) {
  const timer = setTimeout(() => {
    console.error(`${elapsed()}  FAIL  the ${name} did not finish within ${timeoutMs / 1000} s`);
    failed = true;
    void finish(1);
  }, timeoutMs);
  try {
    await main();
    clearTimeout(timer);
    console.log(`${elapsed()}  ${name} passed`);
    await finish(0);
  } catch (e) {
    clearTimeout(timer);
    if (!failed) {
      console.error(`${elapsed()}  FAIL  ${e instanceof StepFailed ? e.message : e?.stack ?? e}`);
      if (pageLogs.length) console.error(`the pages' console:\n  ${pageLogs.join("\n  ")}`);
    }
    await finish(1);
  }
}

/** Headless Chromium with a fresh profile, closed and removed at the end. */
export async function launchChromium() {
  const profile = mkdtempSync(join(tmpdir(), "groundwork-chromium-"));
  cleanups.push(async () => rmSync(profile, { recursive: true, force: true }));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  cleanups.push(() => context.close());
  ok(`Chromium ${context.browser()?.version() ?? ""} started`.trim());
  return context;
}

/** The verification link emailed to `email` (the local stack writes mail to <data>/outbox). */
export async function verificationToken(dataDir, email) {
  const outbox = join(dataDir, "outbox");
  for (let i = 0; i < 100; i++) {
    let names = [];
    try {
      names = readdirSync(outbox).filter((n) => n.endsWith(".eml"));
    } catch {}
    for (const name of names) {
      // Undo quoted-printable soft line breaks and `=3D` before looking for the link.
      const text = readFileSync(join(outbox, name), "utf8").replace(/=\r?\n/g, "").replace(/=3D/gi, "=");
      if (!new RegExp(`^To: .*${email.replace(/[.+]/g, "\\$&")}`, "mi").test(text)) continue;
      const link = text.match(/https?:\/\/\S+\/verify-email\?token=[A-Za-z0-9_-]+/);
      if (link) return new URL(link[0]).searchParams.get("token");
    }
    await sleep(100);
  }
  throw new StepFailed(`no verification email for ${email} in ${outbox}`);
}
