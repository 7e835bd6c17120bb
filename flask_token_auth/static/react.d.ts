// Types of react.js, the React binding of the flask-token-auth browser client.

import type { ReactNode } from "react";
import type { AuthClient, AuthClientOptions, User } from "./client.js";

export interface AuthProviderProps extends AuthClientOptions {
  /** A client made with createAuthClient (default: one made from the options here). */
  client?: AuthClient;
  children?: ReactNode;
}

export interface AuthState {
  /** False until the provider knows whether a session was restored. */
  readonly ready: boolean;
  /** The logged-in user, kept equal across tabs; null when logged out. */
  readonly user: User | null;
  readonly loggedIn: boolean;
  readonly client: AuthClient;
  /** Rejects with the server's error, or CookiesRefused when the browser drops the cookies. */
  login(email: string, password: string): Promise<User>;
  logout(): Promise<void>;
  /** The client's fetch: the Bearer token for the API origin, relative URLs resolved there. */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
}

/** Restores the session on mount and shares it with every useAuth() below it. */
export function AuthProvider(props: AuthProviderProps): ReactNode;

/** The provider's state; throws outside an AuthProvider. */
export function useAuth(): AuthState;
