// The React demo: a page on another origin than the API, whose origin it takes from `?api=`
// (default: its own). It imports the binding from the API, as a page would from its own origin:
//   import { AuthProvider, useAuth } from "/auth/react.js";
import { StrictMode, createElement as h, useState } from "react";
import { createRoot } from "react-dom/client";

const api = new URL(location.href).searchParams.get("api") ?? location.origin;
const { AuthProvider, useAuth } = await import(`${api}/auth/react.js`);

function LoginForm({ login }) {
  const [message, setMessage] = useState("");
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    try {
      await login(form.get("email"), form.get("password"));
    } catch (error) {
      setMessage(`Login failed: ${error.error_description ?? error.message}`);
    }
  };
  return h(
    "form",
    { id: "signed-out", onSubmit: submit },
    h("input", { name: "email", type: "email", placeholder: "email", autoComplete: "username" }),
    h("input", { name: "password", type: "password", placeholder: "password" }),
    h("button", { id: "login", type: "submit" }, "Log in"),
    h("output", { id: "output" }, message),
  );
}

function App() {
  const { ready, user, login, logout, fetch } = useAuth();
  const [output, setOutput] = useState("");
  if (!ready) return h("p", { id: "loading" }, "Restoring the session…");
  if (!user) return h(LoginForm, { login });
  const listSessions = async () => {
    const response = await fetch("/auth/sessions"); // relative: a route of the API
    const { sessions } = await response.json();
    setOutput(`${response.status}: ${sessions.length} session(s)`);
  };
  return h(
    "section",
    { id: "signed-in" },
    h("p", null, "Signed in as ", h("span", { id: "who" }, user.email)),
    h("button", { id: "sessions", onClick: listSessions }, "List my sessions"),
    h("button", { id: "logout", onClick: () => logout().catch((e) => setOutput(e.message)) }, "Log out"),
    h("output", { id: "output" }, output),
  );
}

createRoot(document.getElementById("root")).render(
  h(StrictMode, null, h(AuthProvider, { apiOrigin: api }, h(App))),
);
