// Types of client.js, the flask-token-auth browser client.

export class SessionEnded extends Error {}

export class RefreshFailed extends Error {
  readonly status: number;
}

/** login() found that the browser did not keep the session's cookies; the message says why. */
export class CookiesRefused extends Error {}

export interface User {
  id: number;
  email: string;
  role: string;
  created_at: string;
}

export interface AuthClientOptions {
  /** The API's origin (default: the page's own). Bearer tokens go to it and nowhere else. */
  apiOrigin?: string;
  /** AUTH_URL_PREFIX of the server (default "/auth"). */
  prefix?: string;
  /** Refresh this long before the access token expires (default 30). */
  refreshAheadSeconds?: number;
}

export interface AxiosLike {
  interceptors: {
    request: { use(onFulfilled: (config: any) => any): unknown };
    response: { use(onFulfilled: undefined, onRejected: (error: any) => any): unknown };
  };
  (config: any): Promise<any>;
}

export interface AuthClient {
  readonly apiOrigin: string;
  /** AUTH_URL_PREFIX of the server, as given in the options. */
  readonly prefix: string;
  /** The access token, in memory only (null when logged out). */
  readonly accessToken: string | null;
  /** When the access token expires, in milliseconds since the epoch (0 when logged out). */
  readonly expiresAt: number;
  readonly loggedIn: boolean;
  /**
   * "login" (with the User, when known) fires on a login here or in another tab; "logout" once
   * the session is over (401 invalid_grant, or a logout here or in a tab).
   */
  on(event: "login" | "refresh" | "logout", handler: (detail?: User) => void): () => void;
  /**
   * fetch with the Bearer token for the API origin; refreshes ahead, retries once on 401 (one
   * refresh per access token). A relative URL string is resolved against apiOrigin.
   */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  /** One refresh, shared by every caller and every tab; SessionEnded or RefreshFailed. */
  refresh(): Promise<void>;
  register(email: string, password: string): Promise<User>;
  /** Rejects with the server's error, or CookiesRefused if the browser dropped the cookies. */
  login(email: string, password: string): Promise<User>;
  /** After a reload: refresh from the cookie; true if the session is still live. */
  restore(): Promise<boolean>;
  /** Ends this session on the server, then here and in every tab; RefreshFailed if it could not. */
  logout(): Promise<void>;
  /** Ends every session of the user; RefreshFailed if the server did not. */
  logoutAll(): Promise<void>;
  /** Bearer on requests to the API origin, one refresh and one retry on 401 invalid_token. */
  installAxios(axios: AxiosLike): void;
}

export function createAuthClient(options?: AuthClientOptions): AuthClient;
