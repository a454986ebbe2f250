// A real OpenID Connect provider (panva/oidc-provider, certified) on 127.0.0.1 for the
// portal's sign-in tests. Its built-in "dev interactions" give plain login and consent forms:
// any password works, and the login name picks one of the accounts below.
import Provider from "oidc-provider";

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;

const accounts = {
  alice: { email: "alice@example.com", email_verified: true, name: "Alice Example" },
  bob: { email: "bob@example.com", email_verified: true, name: "Bob Example" },
  mallory: { email: "mallory@example.com", email_verified: false, name: "Mallory" },
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: process.env.CLIENT_ID,
      client_secret: process.env.CLIENT_SECRET,
      redirect_uris: [process.env.REDIRECT_URI],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  pkce: { required: () => true },
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
  conformIdTokenClaims: false, // put the scope's claims in the ID token itself
  cookies: { keys: ["tollway-test-cookie-key"] },
  ttl: { IdToken: 600 },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return { accountId: id, async claims() { return { sub: `${id}-subject`, ...account }; } };
  },
});

provider.listen(port, "127.0.0.1", () => console.log(`READY ${issuer}`));
