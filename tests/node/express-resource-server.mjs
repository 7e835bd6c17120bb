// An Express resource server for the tokens of flask-token-auth (docs/resource-servers.md).
// /introspected/me asks the auth server about each token (RFC 7662): a token whose session was
// revoked is refused at once, for one request to the auth server per call. /jwks/me verifies
// the token alone with the published keys: no such request, but a revoked session's token
// works there until it expires.
import express from "express";
import { createRemoteJWKSet, jwtVerify } from "jose";

export function createResourceServer({ authUrl, clientId, clientSecret, issuer, audience, algorithm }) {
  // RFC 6749 section 2.3.1: both form-encoded, then HTTP Basic.
  const credentials = `${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`;
  const basic = `Basic ${Buffer.from(credentials).toString("base64")}`;
  const jwks = createRemoteJWKSet(new URL(`${authUrl}/jwks.json`));

  async function introspected(req, res, next) {
    const token = bearerToken(req);
    if (!token) return refuse(res);
    let answer;
    try {
      const response = await fetch(`${authUrl}/introspect`, {
        method: "POST",
        headers: { Authorization: basic, "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token }),
        signal: AbortSignal.timeout(5000),
      });
      if (!response.ok) throw new Error(`introspection answered ${response.status}`);
      answer = await response.json();
    } catch {
      return res.status(503).json({ error: "temporarily_unavailable" });
    }
    if (answer.active !== true) return refuse(res);
    req.auth = { sub: answer.sub, sid: answer.sid, role: answer.role };
    return next();
  }

  async function verified(req, res, next) {
    const token = bearerToken(req);
    if (!token) return refuse(res);
    try {
      const { payload } = await jwtVerify(token, jwks, {
        algorithms: [algorithm],
        issuer,
        audience,
        typ: "at+jwt",
      });
      req.auth = { sub: payload.sub, sid: payload.sid, role: payload.role };
    } catch {
      return refuse(res);
    }
    return next();
  }

  const app = express();
  app.get("/introspected/me", introspected, (req, res) => res.json(req.auth));
  app.get("/jwks/me", verified, (req, res) => res.json(req.auth));
  return app;
}

function bearerToken(req) {
  const [scheme, token] = (req.get("Authorization") ?? "").split(" ");
  return scheme?.toLowerCase() === "bearer" ? token : undefined;
}

function refuse(res) {
  res.set("WWW-Authenticate", 'Bearer error="invalid_token"');
  return res.status(401).json({ error: "invalid_token" });
}
