// flask-token-auth for React: <AuthProvider> and useAuth() over the browser module, an ES module
// served at <prefix>/react.js beside client.js. It imports `react` by its bare name: a page
// without a bundler maps it in an import map, a bundled app copies this file and client.js
// (with their .d.ts) into its sources.
//
//   import { AuthProvider, useAuth } from "/auth/react.js";
//   root.render(createElement(AuthProvider, { apiOrigin: "https://api.example" }, app));
//
//   function Profile() {
//     const { ready, user, login, logout, fetch } = useAuth();
//     ...                                  // fetch("/api/hello"): the Bearer attached
//   }
//
// `user` follows the session in every tab: a login, a logout or an ended session in one tab
// reaches the others through the module's BroadcastChannel. No JSX, so nothing to compile.

import { createContext, createElement, useContext, useEffect, useMemo, useState } from "react";
import { createAuthClient } from "./client.js";

const AuthContext = createContext(null);

export function AuthProvider({ client, apiOrigin, prefix, refreshAheadSeconds, children }) {
  // One client for the provider's life: each holds a channel, a timer and the access token.
  const [auth] = useState(
    () => client ?? createAuthClient({ apiOrigin, prefix, refreshAheadSeconds }),
  );
  const [session, setSession] = useState({ ready: false, user: null });

  useEffect(() => {
    let mounted = true;
    const show = (user) => {
      if (mounted) setSession({ ready: true, user });
    };
    // A refresh answers no user: after a reload (or a login another tab announced without
    // one), ask the API who it is.
    const loadUser = async () => {
      const response = await auth.fetch(`${auth.prefix}/me`);
      show(response.ok ? (await response.json()).user : null);
    };
    const unsubscribe = [
      auth.on("login", (user) => (user ? show(user) : loadUser().catch(() => show(null)))),
      auth.on("logout", () => show(null)),
    ];
    const start = auth.loggedIn
      ? loadUser()
      : auth.restore().then((restored) => (restored ? loadUser() : show(null)));
    start.catch(() => show(null)); // the API out of reach: shown logged out, not stuck loading
    return () => {
      mounted = false;
      unsubscribe.forEach((stop) => stop());
    };
  }, [auth]);

  const value = useMemo(
    () => ({
      ...session,
      loggedIn: session.user !== null,
      client: auth,
      login: (email, password) => auth.login(email, password),
      logout: () => auth.logout(),
      fetch: (input, init) => auth.fetch(input, init),
    }),
    [auth, session],
  );
  return createElement(AuthContext.Provider, { value }, children);
}

export function useAuth() {
  const value = useContext(AuthContext);
  if (value === null) {
    throw new Error("useAuth() is called outside <AuthProvider>: render it inside one");
  }
  return value;
}
