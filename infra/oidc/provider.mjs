// A real OpenID Connect provider (npm oidc-provider) on loopback, for the test suite.
// Usage: node provider.mjs <port>
//
// - issuer http://127.0.0.1:<port>, discovery, JWKS (RS256), authorization code + PKCE;
// - dynamic client registration (POST /reg), so each test registers its own redirect URI;
// - the development login and consent pages, which tests drive over HTTP: any login is
//   accepted, and a login that looks like an email address is that account's email
//   (verified unless it starts with "unverified");
// - ID tokens live 60 seconds, so a test can present an expired one by moving the relying
//   party's clock.
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 0);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  features: {
    devInteractions: { enabled: true },
    registration: { enabled: true },
  },
  pkce: { required: () => true },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  scopes: ['openid', 'email', 'profile'],
  ttl: { IdToken: 60 },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        const email = id.includes('@') ? id : `${id}@example.com`;
        return { sub: id, email, email_verified: !id.startsWith('unverified'), name: id.split('@')[0] };
      },
    };
  },
  // Consent is implied for the scopes asked for (the development consent page still runs).
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
});
provider.proxy = false;

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
