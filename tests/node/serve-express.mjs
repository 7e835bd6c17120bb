// Serves express-resource-server.mjs on a free loopback port for the Python tests, configured
// by AUTH_URL, CLIENT_ID, CLIENT_SECRET, ISSUER, AUDIENCE and ALGORITHM; prints {"port"} once
// it listens.
import { createResourceServer } from "./express-resource-server.mjs";

const { AUTH_URL, CLIENT_ID, CLIENT_SECRET, ISSUER, AUDIENCE, ALGORITHM } = process.env;
const app = createResourceServer({
  authUrl: AUTH_URL,
  clientId: CLIENT_ID,
  clientSecret: CLIENT_SECRET,
  issuer: ISSUER,
  audience: AUDIENCE,
  algorithm: ALGORITHM,
});
const server = app.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});
process.stdin.on("end", () => server.close());
process.stdin.resume();
