// Verifies access tokens as a Node resource server does, with jose's createRemoteJWKSet and
// jwtVerify. The key set stays in this process's memory between tokens, as in a long-running
// server. One JSON line in per token, {"token"}; one JSON line out, {"ok": true, "kid", "sub"}
// or {"ok": false, "code", "message"}. Configured by JWKS_URL, ALGORITHM, ISSUER, AUDIENCE and
// COOLDOWN_MS (jose's cooldownDuration; unset: its default, 30 s).
import readline from "node:readline";
import { createRemoteJWKSet, jwtVerify } from "jose";

const { JWKS_URL, ALGORITHM, ISSUER, AUDIENCE, COOLDOWN_MS } = process.env;
const options = COOLDOWN_MS === undefined ? {} : { cooldownDuration: Number(COOLDOWN_MS) };
const jwks = createRemoteJWKSet(new URL(JWKS_URL), options);

for await (const line of readline.createInterface({ input: process.stdin })) {
  const { token } = JSON.parse(line);
  let answer;
  try {
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      algorithms: [ALGORITHM],
      issuer: ISSUER,
      audience: AUDIENCE,
      typ: "at+jwt",
    });
    answer = { ok: true, kid: protectedHeader.kid, sub: payload.sub };
  } catch (error) {
    answer = { ok: false, code: error.code ?? error.name, message: error.message };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
