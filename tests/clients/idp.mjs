// A real OpenID Connect provider for the end-to-end tests (tests/tests/e2e_sso.rs):
// oidc-provider 9 with its development login and consent pages (any password is accepted; the
// login name is the subject).
//
// Settings (environment):
//   IDP_PORT                port on 127.0.0.1 (default 9090); the issuer is http://127.0.0.1:PORT
//   IDP_CLIENT_ID           default "gateway"
//   IDP_CLIENT_SECRET       default "gateway-secret" (client_secret_basic)
//   IDP_REDIRECT_URIS       comma-separated redirect URIs
//   IDP_POST_LOGOUT_URIS    comma-separated post-logout redirect URIs
//   IDP_ACCOUNTS            JSON: {"<login>": {"email": ..., "name": ..., "groups": [...]}}, the
//                           claims of each login (unknown logins get only `sub`)
// Prints "idp ready <issuer>" on stdout once it listens.
import Provider from 'oidc-provider';

const port = Number(process.env.IDP_PORT || process.argv[2] || 9090);
const issuer = `http://127.0.0.1:${port}`;
const accounts = JSON.parse(process.env.IDP_ACCOUNTS || '{}');
const list = (v) => (v || '').split(',').map((s) => s.trim()).filter(Boolean);

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.IDP_CLIENT_ID || 'gateway',
    client_secret: process.env.IDP_CLIENT_SECRET || 'gateway-secret',
    redirect_uris: list(process.env.IDP_REDIRECT_URIS),
    post_logout_redirect_uris: list(process.env.IDP_POST_LOGOUT_URIS),
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  // Put the scopes' claims in the ID token (the gateway reads only the ID token).
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub, ...(accounts[sub] || {}) };
      },
    };
  },
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`idp ready ${issuer}`);
});
