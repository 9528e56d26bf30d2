"use strict";
// The customer-success console: signs a staff member in (the auth routes, refresh token in
// the HttpOnly session cookie, access token in memory only) or takes the operator token,
// then reads /ops/accounts and /ops/accounts/{id}/health. No build step, no dependencies.
(() => {
  const $ = (id) => document.getElementById(id);
  let accessToken = null;
  let operator = false;
  let cursor = null;

  function show(section) {
    $("sign-in").hidden = section !== "sign-in";
    $("accounts").hidden = section === "sign-in";
    $("sign-out").hidden = section === "sign-in";
    if (section === "sign-in") $("detail").hidden = true;
  }

  async function problemText(response) {
    try {
      const p = await response.json();
      return p.detail || p.title || `HTTP ${response.status}`;
    } catch {
      return `HTTP ${response.status}`;
    }
  }

  // Exchanges the session cookie for a new access token; false when there is no session.
  async function refresh() {
    const r = await fetch("/auth/refresh", {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", "x-requested-with": "groundwork-console" },
      body: "{}",
    });
    if (!r.ok) return false;
    accessToken = (await r.json()).access_token;
    return true;
  }

  // A GET with the current credential; one refresh and retry when an access token expired.
  async function get(path) {
    let r = await fetch(path, { headers: { authorization: `Bearer ${accessToken}` } });
    if (r.status === 401 && !operator && (await refresh())) {
      r = await fetch(path, { headers: { authorization: `Bearer ${accessToken}` } });
    }
    if (r.status === 401) {
      signedOut(operator ? "That operator token is not valid." : "Your session ended: sign in again.");
      throw new SignedOut();
    }
    return r;
  }

  class SignedOut extends Error {}
  // Runs a page action; a sign-out it met is already shown, anything else is reported.
  function act(action) {
    action().catch((e) => {
      if (!(e instanceof SignedOut)) $("accounts-error").textContent = `Something went wrong: ${e.message}`;
    });
  }

  async function endSession() {
    if (!operator && accessToken) {
      await fetch("/auth/logout", {
        method: "POST",
        credentials: "same-origin",
        headers: { authorization: `Bearer ${accessToken}`, "x-requested-with": "groundwork-console" },
      }).catch(() => {});
    }
  }

  function signedOut(message) {
    accessToken = null;
    operator = false;
    $("accounts-body").replaceChildren();
    $("sign-in-error").textContent = message || "";
    show("sign-in");
  }

  async function signedIn() {
    $("sign-in-error").textContent = "";
    $("password").value = "";
    $("mfa-form").hidden = true;
    $("password-form").hidden = false;
    const ok = await loadAccounts(false);
    if (ok) show("accounts");
  }

  let challenge = null;
  async function login(body, path) {
    const r = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", "x-requested-with": "groundwork-console" },
      body: JSON.stringify({ ...body, refresh_token_delivery: "cookie" }),
    });
    if (!r.ok) {
      $("sign-in-error").textContent = await problemText(r);
      return;
    }
    const answer = await r.json();
    if (answer.mfa_required) {
      challenge = answer.challenge;
      $("password-form").hidden = true;
      $("mfa-form").hidden = false;
      $("mfa-code").focus();
      return;
    }
    accessToken = answer.access_token;
    operator = false;
    await signedIn();
  }

  $("password-form").addEventListener("submit", (e) => {
    e.preventDefault();
    act(() => login({ email: $("email").value, password: $("password").value }, "/auth/login"));
  });
  $("mfa-form").addEventListener("submit", (e) => {
    e.preventDefault();
    act(() => login({ challenge, code: $("mfa-code").value }, "/auth/login/mfa"));
  });
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    accessToken = $("operator-token").value;
    operator = true;
    $("operator-token").value = "";
    act(signedIn);
  });
  $("sign-out").addEventListener("click", () =>
    act(async () => {
      await endSession();
      signedOut("");
    }),
  );

  function query(extra) {
    const q = new URLSearchParams(extra);
    for (const [name, id] of [["health", "filter-health"], ["plan", "filter-plan"], ["trial", "filter-trial"], ["sort", "sort"]]) {
      const v = $(id).value.trim();
      if (v) q.set(name, v);
    }
    return q;
  }

  const day = (ms) => (ms == null ? "never" : new Date(ms).toISOString().slice(0, 10));
  // Minor units in the account's currency, with Stripe's decimals per currency (as
  // shared::billing::currency_decimals); blank without a subscription.
  const ZERO_DECIMAL = "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split(" ");
  const THREE_DECIMAL = "bhd jod kwd omr tnd".split(" ");
  function money(minor, currency) {
    if (!currency) return "";
    const code = currency.toLowerCase();
    const decimals = ZERO_DECIMAL.includes(code) ? 0 : THREE_DECIMAL.includes(code) ? 3 : 2;
    const major = minor / 10 ** decimals;
    try {
      const format = { style: "currency", currency: code.toUpperCase(), minimumFractionDigits: decimals, maximumFractionDigits: decimals };
      return new Intl.NumberFormat(undefined, format).format(major);
    } catch {
      return `${major.toFixed(decimals)} ${code.toUpperCase()}`;
    }
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function statusBadge(status) {
    const span = document.createElement("span");
    span.className = `status status-${status}`;
    span.textContent = status.replace("_", " ");
    return span;
  }

  // Loads the first page (or, with `more`, the next); false when the caller may not read it.
  async function loadAccounts(more) {
    $("accounts-error").textContent = "";
    const q = query({ limit: "50" });
    if (more && cursor) q.set("cursor", cursor);
    const r = await get(`/ops/accounts?${q}`);
    if (!r.ok) {
      const text = await problemText(r);
      if (r.status === 403) {
        // Signed in, but not staff: the session is of no use here, so it ends.
        await endSession();
        signedOut(`${text}`);
        return false;
      }
      $("accounts-body").replaceChildren();
      $("more").hidden = true;
      $("accounts-error").textContent = text;
      return true;
    }
    const page = await r.json();
    if (!more) $("accounts-body").replaceChildren();
    for (const a of page.accounts) {
      const tr = document.createElement("tr");
      tr.tabIndex = 0;
      tr.dataset.accountId = a.account_id;
      const name = cell(a.name);
      const health = document.createElement("td");
      health.append(statusBadge(a.status));
      const seats = a.seats.allowed ? `${a.seats.used} / ${a.seats.allowed}` : `${a.seats.used}`;
      tr.append(
        name,
        health,
        cell(a.plan),
        cell(money(a.mrr_minor, a.currency)),
        cell(a.payment),
        cell(a.trial_days_left == null ? "" : String(a.trial_days_left)),
        cell(day(a.last_activity_ms)),
        cell(String(a.events_7d)),
        cell(String(a.active_users_30d)),
        cell(seats),
        cell(a.upgrade_suggested.join(", ")),
      );
      const open = () => act(() => openAccount(a.account_id));
      tr.addEventListener("click", open);
      tr.addEventListener("keydown", (e) => {
        if (e.key === "Enter") open();
      });
      $("accounts-body").append(tr);
    }
    cursor = page.next_cursor;
    $("more").hidden = !cursor;
    return true;
  }

  for (const id of ["filter-health", "filter-trial", "sort", "filter-plan"]) {
    $(id).addEventListener("change", () => act(() => loadAccounts(false)));
  }
  $("more").addEventListener("click", () => act(() => loadAccounts(true)));
  $("download-csv").addEventListener("click", () => act(async () => {
    const q = query({ format: "csv" });
    const r = await get(`/ops/accounts?${q}`);
    if (!r.ok) {
      $("accounts-error").textContent = await problemText(r);
      return;
    }
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await r.blob());
    link.download = "accounts.csv";
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  }));

  const SVG = "http://www.w3.org/2000/svg";
  function svg(name, attributes, text) {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attributes)) el.setAttribute(k, String(v));
    if (text != null) el.textContent = text;
    return el;
  }

  // Events in the trailing 7 days, one point per daily record, oldest on the left; each
  // point coloured by that day's health.
  function trendChart(history) {
    const days = [...history].reverse();
    const width = 640;
    const height = 160;
    const pad = { left: 36, right: 12, top: 12, bottom: 28 };
    const max = Math.max(1, ...days.map((d) => d.events_7d));
    const x = (i) => pad.left + (days.length < 2 ? (width - pad.left - pad.right) / 2 : (i * (width - pad.left - pad.right)) / (days.length - 1));
    const y = (v) => pad.top + (1 - v / max) * (height - pad.top - pad.bottom);
    const chart = svg("svg", { id: "trend-chart", viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
    chart.append(svg("title", {}, `Events in the trailing 7 days over ${days.length} day(s)`));
    chart.append(svg("line", { x1: pad.left, y1: y(0), x2: width - pad.right, y2: y(0), stroke: "#c9ced8" }));
    chart.append(svg("text", { x: 4, y: y(max) + 4 }, String(max)));
    chart.append(svg("text", { x: 4, y: y(0) + 4 }, "0"));
    if (days.length) {
      const points = days.map((d, i) => `${x(i)},${y(d.events_7d)}`).join(" ");
      chart.append(svg("polyline", { points, fill: "none", stroke: "#3b5bdb", "stroke-width": 2 }));
      const colours = { active: "#2f9e44", at_risk: "#f08c00", dormant: "#e03131" };
      days.forEach((d, i) => {
        const dot = svg("circle", { cx: x(i), cy: y(d.events_7d), r: 4, fill: colours[d.status] || "#868e96", "data-day": d.day, "data-status": d.status });
        dot.append(svg("title", {}, `${d.day}: ${d.events_7d} event(s) in 7 days, ${d.status.replace("_", " ")}`));
        chart.append(dot);
      });
      chart.append(svg("text", { x: pad.left, y: height - 8 }, days[0].day));
      if (days.length > 1) chart.append(svg("text", { x: width - pad.right, y: height - 8, "text-anchor": "end" }, days[days.length - 1].day));
    }
    return chart;
  }

  async function openAccount(id) {
    const r = await get(`/ops/accounts/${encodeURIComponent(id)}/health`);
    if (!r.ok) {
      $("accounts-error").textContent = await problemText(r);
      return;
    }
    const detail = await r.json();
    const c = detail.current;
    $("detail-title").textContent = c.name;
    const facts = [
      ["Health", c.status.replace("_", " ") + (detail.dormant_since_ms ? ` since ${day(detail.dormant_since_ms)}` : "")],
      ["Plan", `${c.plan} (payment: ${c.payment})`],
      ["MRR", money(c.mrr_minor, c.currency) || "no subscription"],
      ["Trial days left", c.trial_days_left == null ? "not in trial" : String(c.trial_days_left)],
      ["Last activity", day(c.last_activity_ms)],
      ["Time to first value", c.time_to_first_value_ms == null ? "not reached" : `${Math.round(c.time_to_first_value_ms / 86_400_000)} day(s)`],
      ["Events", `${c.events_7d} in 7 days, ${c.events_30d} in 30 days`],
      ["Features used (30 d)", c.features_30d.join(", ") || "none"],
      ["Seats", c.seats.allowed ? `${c.seats.used} of ${c.seats.allowed}` : `${c.seats.used} (unlimited)`],
      ["Upgrade suggested", c.upgrade_suggested.join(", ") || "no"],
    ];
    const dl = $("detail-facts");
    dl.replaceChildren();
    for (const [k, v] of facts) dl.append(Object.assign(document.createElement("dt"), { textContent: k }), Object.assign(document.createElement("dd"), { textContent: v }));
    $("trend").replaceChildren(trendChart(detail.history));
    $("detail").hidden = false;
    $("detail").scrollIntoView({ block: "nearest" });
  }

  // A session cookie from an earlier visit signs the staff member straight in.
  act(async () => ((await refresh()) ? signedIn() : show("sign-in")));
})();
