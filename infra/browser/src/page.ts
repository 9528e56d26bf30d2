// The test page: a minimal single-page app that calls the API through the TypeScript client
// (clients/typescript), as a frontend would. The API's address is the `api` query parameter.
// test.mjs drives it through `window.gw`; each call is also logged on the page.
import { createClient } from "@groundwork/client";

const api = new URLSearchParams(location.search).get("api") ?? "";
const client = createClient({ baseUrl: api, onSessionEnd: () => log("session ended") });
document.getElementById("api")!.textContent = api;

function log(line: string): void {
  document.getElementById("log")!.append(`${line}\n`);
  console.info(line);
}

/** What a step answers the test: the HTTP status, the problem code on failure, and some data. */
interface Outcome {
  status: number;
  code?: string;
  [key: string]: unknown;
}

function outcome(name: string, response: Response, error: { code: string } | undefined, data: object = {}): Outcome {
  log(`${name}: ${response.status}${error ? ` ${error.code}` : ""}`);
  return error ? { status: response.status, code: error.code } : { status: response.status, ...data };
}

const gw = {
  async signup(email: string, password: string): Promise<Outcome> {
    const { response, error } = await client.POST("/auth/signup", { body: { email, password } });
    return outcome("sign-up", response, error);
  },

  async verify(token: string): Promise<Outcome> {
    const { data, response, error } = await client.POST("/auth/verify-email", { body: { token } });
    return outcome("verify", response, error, { email_verified: data?.email_verified });
  },

  async login(email: string, password: string): Promise<Outcome> {
    const { data, response, error } = await client.login(email, password);
    // The whole answer, so the test sees that it holds no refresh token.
    return outcome("login", response, error, { body: data });
  },

  async me(): Promise<Outcome> {
    const { data, response, error } = await client.GET("/me");
    return outcome("GET /me", response, error, { email: data?.email });
  },

  /** GET /me with a given access token, past the client's refresh (an explicit header wins). */
  async meWithToken(token: string): Promise<Outcome> {
    const { response, error } = await client.GET("/me", { headers: { Authorization: `Bearer ${token}` } });
    return outcome("GET /me (given token)", response, error);
  },

  async createAccount(name: string): Promise<Outcome> {
    const { data, response, error } = await client.POST("/accounts", { body: { name } });
    return outcome("POST /accounts", response, error, { id: data?.id, name: data?.name, role: data?.role });
  },

  async listAccounts(): Promise<Outcome> {
    const { data, response, error } = await client.GET("/accounts");
    return outcome("GET /accounts", response, error, { count: data?.accounts.length });
  },

  /** POST /auth/refresh with the cookie, as is: the status, without the client's bookkeeping. */
  async refreshRaw(): Promise<Outcome> {
    const { response, error } = await client.POST("/auth/refresh", { body: {} });
    return outcome("POST /auth/refresh", response, error);
  },

  /** What an app does after a page load: resume the session from the cookie. */
  async resume(): Promise<boolean> {
    const resumed = await client.refresh();
    log(`resume: ${resumed}`);
    return resumed;
  },

  async logout(): Promise<Outcome> {
    const { response, error } = await client.logout();
    return outcome("logout", response, error);
  },

  accessToken: (): string | null => client.accessToken(),
  documentCookie: (): string => document.cookie,
};

declare global {
  interface Window {
    gw: typeof gw;
  }
}
window.gw = gw;
log("ready");
