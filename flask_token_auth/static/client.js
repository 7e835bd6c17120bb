// flask-token-auth browser client: one dependency-free ES module, served at <prefix>/client.js.
//
//   import { createAuthClient } from "/auth/client.js";
//   const auth = createAuthClient();                  // or { apiOrigin: "https://api.example" }
//   auth.on("logout", () => showLoginForm());
//   await auth.restore();                              // after a reload: true if still logged in
//   await auth.login(email, password);
//   const response = await auth.fetch("/api/hello");   // Bearer attached, refreshed when needed
//
// The access token lives in memory only and goes only to `apiOrigin`. The refresh token is an
// HttpOnly cookie scripts never see; the CSRF value (useless without that cookie) is kept where
// a page on another origin can find it again after a reload. One refresh at a time, across the
// page (a shared promise) and across tabs (Web Locks, results shared by BroadcastChannel).
// Only a definitive "session over" (401 invalid_grant) logs out; a 403, 429 or 5xx does not.

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
  let generation = 0;
  let inflight = null;
  let timer = null;

  const emit = (name, detail) => listeners[name].forEach((handler) => handler(detail));
  const api = (path) => `${apiOrigin}${prefix}${path}`;

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

  function adopt(body, { announce = true } = {}) {
    accessToken = body.access_token;
    lifetimeMs = body.expires_in * 1000;
    expiresAt = Date.now() + lifetimeMs;
    generation += 1;
    if (body.csrf_token && apiOrigin !== location.origin) {
      localStorage.setItem(csrfKey, body.csrf_token);
    }
    schedule();
    if (announce && channel) {
      channel.postMessage({ type: "tokens", access_token: accessToken, expires_at: expiresAt });
    }
  }

  function forget({ announce = true } = {}) {
    const wasLoggedIn = accessToken !== null;
    accessToken = null;
    expiresAt = 0;
    generation += 1;
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
        generation += 1;
        schedule();
        emit(wasLoggedOut ? "login" : "refresh");
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

  async function refreshNow(seenGeneration) {
    // Another tab (or this one) refreshed while we waited for the lock: take its result.
    if (generation !== seenGeneration && !stale()) return;
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

  function refresh() {
    if (!inflight) {
      const seen = generation;
      inflight = exclusively(() => refreshNow(seen)).finally(() => {
        inflight = null;
      });
    }
    return inflight;
  }

  function authorized(request, url) {
    // A copy with our Bearer token (for the API origin only); the original stays unread.
    const copy = new Request(request.clone(), isOurs(url) ? { credentials: "include" } : {});
    if (isOurs(url) && accessToken) copy.headers.set("Authorization", `Bearer ${accessToken}`);
    return copy;
  }

  async function authFetch(input, init = undefined) {
    const request = new Request(input, init);
    const url = new URL(request.url);
    const guarded = isOurs(url) && !isAuthEndpoint(url);
    if (guarded && accessToken !== null && stale()) await refresh().catch(() => {});
    let response = await fetch(authorized(request, url));
    if (response.status === 401 && guarded && accessToken !== null) {
      const body = await response.clone().json().catch(() => ({}));
      if (body.error === "invalid_token") {
        await refresh();
        response = await fetch(authorized(request, url));
      }
    }
    return response;
  }

  return {
    apiOrigin,
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
