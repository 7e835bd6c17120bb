// flask-token-auth browser client: one dependency-free ES module, served at <prefix>/client.js.
//
//   import { createAuthClient } from "/auth/client.js";
//   const auth = createAuthClient();                  // or { apiOrigin: "https://api.example" }
//   auth.on("logout", () => showLoginForm());
//   await auth.restore();                              // after a reload: true if still logged in
//   await auth.login(email, password);
//   const response = await auth.fetch("/api/hello");   // Bearer attached, refreshed when needed
//
// The access token lives in memory only and goes only to `apiOrigin`, against which a relative
// URL is resolved. The refresh token is an HttpOnly cookie scripts never see; the CSRF value
// (useless without that cookie) is kept where a page on another origin can find it again after a
// reload. One refresh per access token, however many requests it failed, and one at a time,
// across the page (a shared promise) and across tabs (Web Locks, results shared by
// BroadcastChannel). Only a definitive "session over" (401 invalid_grant) logs out; a 403, 429
// or 5xx does not. A login whose cookies the browser refused is rejected (CookiesRefused).

const CSRF_COOKIES = ["__Host-csrf_token", "csrf_token"];
const AUTH_PATHS = ["/login", "/register", "/refresh", "/logout"];
// A refresh whose answer is lost (network error, 5xx) is sent again with the same cookie while
// the server's grace window (10 s by default) still answers it with the session's live token.
const RETRY_DELAYS_MS = [500, 1000, 2000];
const REQUEST_TIMEOUT_MS = 10000;

export class SessionEnded extends Error {
  constructor(message) {
    super(message);
    this.name = "SessionEnded";
  }
}

export class RefreshFailed extends Error {
  constructor(status) {
    super(`refresh failed with HTTP ${status}`);
    this.name = "RefreshFailed";
    this.status = status;
  }
}

export class CookiesRefused extends Error {
  constructor() {
    super(
      "the browser did not keep the session's cookies, so the first refresh would end the " +
        "session: Secure cookies need https (AUTH_COOKIE_SECURE=false is for local http " +
        "development only), and browsers block cookies of an API on another site: serve the API " +
        "from the page's site (a subdomain, AUTH_COOKIE_DOMAIN), set AUTH_COOKIE_SAMESITE=None " +
        "with AUTH_COOKIE_PARTITIONED=true, or put it behind a backend-for-frontend " +
        "(see docs/clients.md)",
    );
    this.name = "CookiesRefused";
  }
}

export function createAuthClient(options = {}) {
  const apiOrigin = new URL(options.apiOrigin ?? location.origin).origin;
  const prefix = options.prefix ?? "/auth";
  const refreshAheadMs = (options.refreshAheadSeconds ?? 30) * 1000;
  const csrfKey = `flask-token-auth:csrf:${apiOrigin}`;
  const channel = "BroadcastChannel" in globalThis
    ? new BroadcastChannel(`flask-token-auth:${apiOrigin}`)
    : null;
  const listeners = { login: [], refresh: [], logout: [] };
  let accessToken = null;
  let expiresAt = 0;
  let lifetimeMs = 0;
  let inflight = null;
  let timer = null;

  const emit = (name, detail) => listeners[name].forEach((handler) => handler(detail));
  const api = (path) => `${apiOrigin}${prefix}${path}`;
  // A relative URL names a resource of the API, on its origin when that is not the page's.
  const base = () => (apiOrigin === location.origin ? location.href : `${apiOrigin}/`);

  function isOurs(url) {
    return url.origin === apiOrigin;
  }

  function isAuthEndpoint(url) {
    return isOurs(url) && AUTH_PATHS.some((path) => url.pathname === prefix + path);
  }

  function csrfValue() {
    if (apiOrigin === location.origin) {
      // The `__Host-` one where the cookies are Secure and host-only: a sibling subdomain
      // cannot set it, so a tossed `csrf_token` is never read.
      const cookies = document.cookie.split("; ");
      for (const name of CSRF_COOKIES) {
        const cookie = cookies.find((c) => c.startsWith(`${name}=`));
        if (cookie) return decodeURIComponent(cookie.slice(name.length + 1));
      }
    }
    return localStorage.getItem(csrfKey);
  }

  function adopt(body) {
    accessToken = body.access_token;
    lifetimeMs = body.expires_in * 1000;
    expiresAt = Date.now() + lifetimeMs;
    if (body.csrf_token && apiOrigin !== location.origin) {
      localStorage.setItem(csrfKey, body.csrf_token);
    }
    schedule();
    if (channel) {
      // A login's user too: another tab may show someone else until it hears of this one.
      channel.postMessage({
        type: "tokens", access_token: accessToken, expires_at: expiresAt, user: body.user,
      });
    }
  }

  function forget({ announce = true } = {}) {
    const wasLoggedIn = accessToken !== null;
    accessToken = null;
    expiresAt = 0;
    clearTimeout(timer);
    localStorage.removeItem(csrfKey);
    if (announce && channel) channel.postMessage({ type: "logout" });
    if (wasLoggedIn || announce) emit("logout");
  }

  // Never more than half the token's lifetime ahead, or a short TTL would refresh in a loop.
  const aheadMs = () => Math.min(refreshAheadMs, lifetimeMs / 2);

  function schedule() {
    clearTimeout(timer);
    const wait = Math.max(0, expiresAt - Date.now() - aheadMs());
    timer = setTimeout(() => refresh().catch(() => {}), wait);
  }

  function stale() {
    return accessToken === null || Date.now() >= expiresAt - aheadMs();
  }

  if (channel) {
    channel.onmessage = ({ data }) => {
      if (data.type === "tokens") {
        const wasLoggedOut = accessToken === null;
        accessToken = data.access_token;
        lifetimeMs = Math.max(lifetimeMs, data.expires_at - Date.now());
        expiresAt = data.expires_at;
        schedule();
        if (wasLoggedOut || data.user) emit("login", data.user);
        else emit("refresh");
      } else if (data.type === "logout") {
        forget({ announce: false });
      }
    };
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && accessToken !== null && stale()) {
      refresh().catch(() => {});
    }
  });

  async function post(path, body, headers = {}) {
    return fetch(api(path), {
      method: "POST",
      credentials: "include",
      headers: { "Content-Type": "application/json", ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS), // a hung request must not hold the lock
    });
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function sendRefresh() {
    for (let attempt = 0; ; attempt += 1) {
      try {
        const response = await post("/refresh", undefined, { "X-CSRF-Token": csrfValue() ?? "" });
        if (response.status < 500 || attempt === RETRY_DELAYS_MS.length) return response;
      } catch (error) {
        if (attempt === RETRY_DELAYS_MS.length) throw error;
      }
      await sleep(RETRY_DELAYS_MS[attempt]);
    }
  }

  async function refreshNow(replaced) {
    // Another tab (or this one) refreshed while we waited for the lock: take its result.
    if (accessToken !== replaced && !stale()) return;
    const response = await sendRefresh();
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      adopt(body);
      emit("refresh");
      return;
    }
    if (response.status === 401 && body.error === "invalid_grant") {
      forget();
      throw new SessionEnded(body.error_description ?? "the session has ended");
    }
    throw new RefreshFailed(response.status);
  }

  // One lock per API origin across the tabs: refreshes and logouts never overlap.
  const exclusively = (work) => navigator.locks
    ? navigator.locks.request(`flask-token-auth:refresh:${apiOrigin}`, work)
    : work();

  // The refresh that replaces the access token `replaced`: the one in flight, else a new one.
  function refreshReplacing(replaced) {
    if (!inflight) {
      inflight = exclusively(() => refreshNow(replaced)).finally(() => {
        inflight = null;
      });
    }
    return inflight;
  }

  const refresh = () => refreshReplacing(accessToken);

  function authorized(request, url, token) {
    // A copy with the Bearer `token` (for the API origin only); the original stays unread.
    const copy = new Request(request.clone(), isOurs(url) ? { credentials: "include" } : {});
    if (isOurs(url) && token) copy.headers.set("Authorization", `Bearer ${token}`);
    return copy;
  }

  async function authFetch(input, init = undefined) {
    // A Request's URL is already absolute (against the page); a relative string is the API's.
    const request = new Request(input instanceof Request ? input : new URL(input, base()), init);
    const url = new URL(request.url);
    const guarded = isOurs(url) && !isAuthEndpoint(url);
    if (guarded && accessToken !== null && stale()) await refresh().catch(() => {});
    const sent = accessToken;
    let response = await fetch(authorized(request, url, sent));
    if (response.status === 401 && guarded && sent !== null) {
      const body = await response.clone().json().catch(() => ({}));
      if (body.error === "invalid_token") {
        // The token the request carried decides, not when its 401 came back: once replaced,
        // the request is sent again with its successor, so one token costs one refresh.
        if (accessToken === sent) await refreshReplacing(sent);
        if (accessToken !== null) response = await fetch(authorized(request, url, accessToken));
      }
    }
    return response;
  }

  // After a login: whether the browser kept the cookies a refresh needs (a Secure cookie over
  // http, or a cookie of another site, is dropped), checked without rotating. A check that
  // cannot answer fails no login; a refused login's session is ended by its access token.
  async function keptCookies(body) {
    let response;
    try {
      response = await fetch(api("/cookie-check"), {
        credentials: "include",
        headers: { "X-CSRF-Token": body.csrf_token ?? "" },
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch {
      return true;
    }
    if (response.status !== 409 && response.status !== 403) return true;
    await fetch(api("/logout"), {
      method: "POST",
      credentials: "omit", // this session's token alone, never a cookie of an older one
      headers: { Authorization: `Bearer ${body.access_token}` },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    }).catch(() => {});
    return false;
  }

  return {
    apiOrigin,
    prefix,
    on(name, handler) {
      listeners[name].push(handler);
      return () => {
        listeners[name] = listeners[name].filter((h) => h !== handler);
      };
    },
    get accessToken() {
      return accessToken;
    },
    get expiresAt() {
      return expiresAt;
    },
    get loggedIn() {
      return accessToken !== null;
    },
    fetch: authFetch,
    refresh,
    async register(email, password) {
      const response = await post("/register", { email, password });
      const body = await response.json();
      if (!response.ok) throw Object.assign(new Error(body.error_description), body);
      return body.user;
    },
    async login(email, password) {
      const response = await post("/login", { email, password });
      const body = await response.json();
      if (!response.ok) throw Object.assign(new Error(body.error_description), body);
      if (!(await keptCookies(body))) throw new CookiesRefused();
      adopt(body);
      emit("login", body.user);
      return body.user;
    },
    async restore() {
      if (csrfValue() === null) return false;
      try {
        await refresh();
        return true;
      } catch (error) {
        if (error instanceof SessionEnded) return false;
        throw error;
      }
    },
    async logout() {
      // Under the refresh lock, so that no refresh in another tab lands after it. Forgotten
      // only once the server has ended the session: a failed logout leaves it live, and says so.
      await exclusively(async () => {
        const headers = { "X-CSRF-Token": csrfValue() ?? "" };
        if (accessToken) headers.Authorization = `Bearer ${accessToken}`;
        const response = await post("/logout", undefined, headers);
        if (!response.ok) throw new RefreshFailed(response.status);
        forget();
      });
    },
    async logoutAll() {
      // The answer ends every session and clears the cookies.
      const response = await authFetch(api("/logout-all"), { method: "POST" });
      if (!response.ok) throw new RefreshFailed(response.status);
      await exclusively(async () => forget());
    },
    installAxios(axios) {
      // The URL axios will really call: baseURL and url joined its way, made absolute.
      const target = (config) => new URL(axios.getUri(config), location.href);
      const bearer = (config) => {
        if (config.headers?.set) config.headers.set("Authorization", `Bearer ${accessToken}`);
        else config.headers = { ...config.headers, Authorization: `Bearer ${accessToken}` };
      };
      axios.interceptors.request.use(async (config) => {
        const url = target(config);
        if (isOurs(url) && !isAuthEndpoint(url) && accessToken !== null && stale()) {
          await refresh().catch(() => {});
        }
        if (isOurs(url) && accessToken) {
          bearer(config);
          config.withCredentials = true;
        }
        return config;
      });
      axios.interceptors.response.use(undefined, async (error) => {
        const config = error.config;
        if (!config || config._retried || error.response?.status !== 401 ||
            error.response?.data?.error !== "invalid_token") throw error;
        const url = target(config);
        if (!isOurs(url) || isAuthEndpoint(url)) throw error;
        try {
          await refresh();
        } catch {
          throw error; // the request's own error, not the refresh's
        }
        config._retried = true;
        bearer(config);
        return axios(config);
      });
    },
  };
}
