// A real OpenID provider (node-oidc-provider) for radvigil's sign-in tests, on loopback only.
//
// Usage: node provider.mjs <port> <redirect-uri> [<redirect-uri> ...]
// Prints "READY <issuer>" once listening. Static clients (secret "<client id>-secret"):
//   radvigil        the dashboard under test
//   radvigil-short  the same, with ID tokens that live 2 seconds (expiry tests)
//   other-app       another relying party of the same provider (wrong-audience tests)
// Users sign in with the provider's own development login form: any password, and the login
// names the account: alice (radiologists), bob (auditors), carol (admins), dave (radiologists
// and admins), mallory (visitors: no radvigil role). PKCE is required of every client.
import { generateKeyPairSync } from "node:crypto";
import Provider from "oidc-provider";

const [port, ...redirectUris] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const GROUPS = {
  alice: ["radiologists"],
  bob: ["auditors"],
  carol: ["admins"],
  dave: ["radiologists", "admins"],
  mallory: ["visitors"],
};

const client = (id) => ({
  client_id: id,
  client_secret: `${id}-secret`,
  redirect_uris: redirectUris,
  grant_types: ["authorization_code"],
  response_types: ["code"],
  token_endpoint_auth_method: "client_secret_basic",
});

const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: "jwk" }), kid: "test-key", use: "sig", alg: "RS256" };

const provider = new Provider(issuer, {
  clients: [client("radvigil"), client("radvigil-short"), client("other-app")],
  jwks: { keys: [signingKey] },
  cookies: { keys: ["radvigil-test-provider-cookie-key"] },
  pkce: { required: () => true },
  scopes: ["openid", "profile", "groups"],
  claims: { openid: ["sub"], profile: ["preferred_username", "name"], groups: ["groups"] },
  conformIdTokenClaims: false, // put profile and groups in the ID token, as hospital IdPs do
  features: { devInteractions: { enabled: true } },
  ttl: {
    IdToken: (ctx, token, c) => (c.clientId === "radvigil-short" ? 2 : 3600),
    AccessToken: 600,
    AuthorizationCode: 60,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, name: id, groups: GROUPS[id] ?? [] };
      },
    };
  },
  // First-party clients: grant what they ask for without a consent screen.
  async loadExistingGrant(ctx) {
    const grantId =
      ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope("openid profile groups");
    await grant.save();
    return grant;
  },
});

const server = provider.listen(Number(port), "127.0.0.1", () => {
  process.stdout.write(`READY ${issuer}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
