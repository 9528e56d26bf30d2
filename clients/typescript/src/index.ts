/**
 * The Groundwork API client for browser apps.
 *
 * `createClient` returns an openapi-fetch client typed by the API's OpenAPI document
 * (`./schema.d.ts`, generated: see generate.sh) that also holds the browser session:
 *
 * - the access token stays in this module's memory, never in `localStorage` or a readable
 *   cookie, where any script running on the page could take it;
 * - the refresh token is the `gw_refresh` cookie the API sets at login
 *   (`refresh_token_delivery: "cookie"`): `HttpOnly`, so page scripts cannot read it, and
 *   sent by the browser only to `/auth/refresh` and `/auth/logout`;
 * - every request goes with `credentials: "include"` and an `X-Requested-With` header: the
 *   API takes the cookie only from an allowed `Origin` with that header (CSRF);
 * - a call that carried the access token and got 401 (the token expired) refreshes the
 *   session once with the cookie, then is sent again once with the new token. Calls that
 *   fail together share one refresh.
 *
 * After a page load the memory is empty: call `refresh()` to resume the session from the
 * cookie (false: nobody is logged in).
 */
import createFetchClient, { type Client, type FetchResponse, type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema.js";

export type { components, operations, paths } from "./schema.js";

/** The API's named schemas: `Schemas["Me"]`, `Schemas["Problem"]`, ... */
export type Schemas = components["schemas"];

export interface ClientOptions {
  /** Where the API is, without a trailing path: `https://api.acme.com`. */
  baseUrl: string;
  /** The `X-Requested-With` value; the API accepts any. Default `groundwork-client`. */
  requestedWith?: string;
  /**
   * Called when the API refuses to refresh a session this client held (401): it was ended
   * elsewhere (logout in another tab, revoked, password reset) or expired. Not called when
   * `refresh()` finds no session at start-up: it resolves false.
   */
  onSessionEnd?: () => void;
  /** A `fetch` to use instead of the global one. */
  fetch?: (request: Request) => Promise<Response>;
}

/**
 * Routes that never take the access token. A 401 from them is a wrong credential, not an
 * expired token (`invalid_credentials`, or no session), so it is never refreshed and
 * retried.
 */
const WITHOUT_BEARER: ReadonlySet<string> = new Set<keyof paths>([
  "/auth/signup",
  "/auth/verify-email",
  "/auth/login",
  "/auth/login/mfa",
  "/auth/refresh",
  "/auth/password/forgot",
  "/auth/password/reset",
]);

/** What a call of `Path` with `Method` answers: `data`, or `error` (a problem), and `response`. */
export type Answer<Path extends keyof paths, Method extends keyof paths[Path]> = FetchResponse<
  paths[Path][Method] & Record<string | number, unknown>,
  object,
  `${string}/${string}`
>;

/** The openapi-fetch client (`GET`, `POST`, ... typed by `paths`) and the session's helpers. */
export type GroundworkClient = Client<paths> & {
  /**
   * Logs in with email and password; the refresh token goes into the `HttpOnly` cookie and
   * the access token into memory. Answers what the API answered: `data` is the token pair
   * (without `refresh_token`) or, for a user with two-factor authentication, an MFA
   * challenge for `loginMfa`; `error` is a problem (401 wrong email or password, 429 too
   * many tries).
   */
  login(email: string, password: string): Promise<Answer<"/auth/login", "post">>;
  /** Completes a login that answered an MFA challenge, with a TOTP code or a recovery code. */
  loginMfa(challenge: string, factor: { code: string } | { recovery_code: string }): Promise<Answer<"/auth/login/mfa", "post">>;
  /**
   * Exchanges the refresh cookie for a new access token (and a new cookie). Resolves true
   * when the session goes on, false when there is none. Concurrent calls share one request.
   */
  refresh(): Promise<boolean>;
  /** Ends the session (the cookie's: 204, and the browser drops it) and forgets the access token. */
  logout(): Promise<Answer<"/auth/logout", "post">>;
  /** The access token in memory, or null when logged out (or not yet resumed). */
  accessToken(): string | null;
};

/** Creates a client; each holds its own session. */
export function createClient(options: ClientOptions): GroundworkClient {
  const requestedWith = options.requestedWith ?? "groundwork-client";
  const send = options.fetch ?? ((request: Request) => globalThis.fetch(request));
  const client: Client<paths> = createFetchClient<paths>({
    baseUrl: options.baseUrl,
    credentials: "include",
    fetch: send,
  });

  let accessToken: string | null = null;
  let refreshing: Promise<boolean> | null = null;
  // Requests sent with the access token, by openapi-fetch's request id: the token they
  // carried and a copy to send again.
  const withBearer = new Map<string, { token: string; copy: Request }>();

  const session: Middleware = {
    onRequest({ request, schemaPath, id }) {
      request.headers.set("X-Requested-With", requestedWith);
      if (accessToken !== null && !WITHOUT_BEARER.has(schemaPath) && !request.headers.has("Authorization")) {
        request.headers.set("Authorization", `Bearer ${accessToken}`);
        withBearer.set(id, { token: accessToken, copy: request.clone() });
      }
      return request;
    },
    async onResponse({ response, id }) {
      const sent = withBearer.get(id);
      withBearer.delete(id);
      if (sent === undefined || response.status !== 401) return undefined;
      // Another call may have refreshed while this one was on its way.
      const renewed = sent.token !== accessToken ? accessToken !== null : await refresh();
      if (!renewed || accessToken === null) return undefined;
      sent.copy.headers.set("Authorization", `Bearer ${accessToken}`);
      return send(sent.copy);
    },
    onError({ id }) {
      withBearer.delete(id);
    },
  };
  client.use(session);

  function refresh(): Promise<boolean> {
    refreshing ??= (async () => {
      try {
        const { data, response } = await client.POST("/auth/refresh", { body: {} });
        if (data !== undefined) {
          accessToken = data.access_token;
          return true;
        }
        if (response.status === 401) {
          const held = accessToken !== null;
          accessToken = null;
          if (held) options.onSessionEnd?.();
        }
        return false;
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  async function login(email: string, password: string): Promise<Answer<"/auth/login", "post">> {
    const result = await client.POST("/auth/login", {
      body: { email, password, refresh_token_delivery: "cookie" },
    });
    if (result.data !== undefined && "access_token" in result.data) accessToken = result.data.access_token;
    return result;
  }

  async function loginMfa(
    challenge: string,
    factor: { code: string } | { recovery_code: string },
  ): Promise<Answer<"/auth/login/mfa", "post">> {
    const result = await client.POST("/auth/login/mfa", {
      body: { challenge, ...factor, refresh_token_delivery: "cookie" },
    });
    if (result.data !== undefined) accessToken = result.data.access_token;
    return result;
  }

  async function logout(): Promise<Answer<"/auth/logout", "post">> {
    const result = await client.POST("/auth/logout");
    accessToken = null;
    return result;
  }

  return Object.assign(client, {
    login,
    loginMfa,
    logout,
    refresh,
    accessToken: () => accessToken,
  });
}
