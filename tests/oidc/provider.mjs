// A real OpenID Provider for the browser sign-in tests: panva's oidc-provider, on loopback only.
//
// usage: OIDC_PROVIDER_ENTRY=<.../oidc-provider/lib/index.js> node provider.mjs CONFIG.json
// CONFIG.json: {"host", "port", "clients": [...], "accounts": {login: {email, groups}}}
// It runs the authorization code flow with PKCE required for every client, its development login
// form (any password), no consent screen for the registered clients, and groups in the ID token.
// Prints one line "OIDC READY <issuer>" once it accepts connections; exits on SIGTERM/SIGINT.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const entry = process.env.OIDC_PROVIDER_ENTRY;
const configFile = process.argv[2];
if (!entry || !configFile) {
  console.error('usage: OIDC_PROVIDER_ENTRY=... node provider.mjs CONFIG.json');
  process.exit(2);
}
const { default: Provider } = await import(pathToFileURL(entry).href);
const config = JSON.parse(readFileSync(configFile, 'utf8'));
const issuer = `http://${config.host}:${config.port}`;
const accounts = config.accounts || {};

const provider = new Provider(issuer, {
  clients: config.clients,
  // PKCE for every client, confidential ones too (Okta: "Require PKCE as additional verification").
  pkce: { required: () => true },
  // Scope claims (groups, email) in the ID token, as Okta's org authorization server does.
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  cookies: { keys: ['oidc-provider-test-cookie-key-0123456789'] },
  ttl: { Session: 3600, Interaction: 600, Grant: 3600, AuthorizationCode: 60, AccessToken: 600, IdToken: 600 },
  async findAccount(ctx, id) {
    const account = accounts[id] || { email: `${id}@example.test`, groups: [] };
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: account.email, email_verified: true, name: id, groups: account.groups };
      },
    };
  },
  // No consent screen: the registered clients are first-party (an Okta app needs none either).
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      return ctx.oidc.provider.Grant.find(grantId);
    }
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid email profile groups');
    await grant.save();
    return grant;
  },
});
// Quiet: the tests read what they need from HTTP, and a noisy stderr hides real failures.
provider.on('server_error', (ctx, err) => console.error(`server_error ${err && err.message}`));

const server = provider.listen(config.port, config.host, () => {
  console.log(`OIDC READY ${issuer}`);
});

const stop = () => {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
