// A real OpenID Connect provider (the `oidc-provider` package) for tests/http_identity.rs.
//
//   node oidc_provider.mjs CONFIG_JSON
//
// CONFIG_JSON: {"port": 0, "audience": "leasehold", "keys_file": "...", "key_ids": ["k1", "k2"],
//               "published": ["k1"], "clients": {"<client id>": {"email": "...", ...}, ...}}
//
// The signing keys (RSA, one per key id) are read from keys_file, or made and written there
// when it does not exist, so that a restarted provider signs with the same keys; it publishes
// the `published` ones (all by default).
//
// Each client stands for one person: the client-credentials grant (POST /token with
// client_id=<id>&client_secret=secret in the form) answers a JWT access token signed with the first key,
// whose `sub` is the client id, `aud` the audience and the client's claims added. The provider
// publishes its discovery document and its keys' public halves at /jwks like any other.
//
// For the hostile-token tests, POST /test/sign {"claims": {...}, "kid"?} signs any claims with
// a configured key (the provider's own, or one it does not publish), so that expired,
// not-yet-valid or foreign-audience tokens carry a signature Leasehold would otherwise trust.
//
// Prints "listening <issuer>" once it serves, then serves until killed.

import http from 'node:http';
import https from 'node:https';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';
import { importJWK, SignJWT } from 'jose';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
if (!existsSync(config.keys_file)) {
  const made = config.key_ids.map((kid) => ({
    ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
    kid,
    alg: 'RS256',
    use: 'sig',
  }));
  writeFileSync(config.keys_file, JSON.stringify(made));
}
const signingKeys = JSON.parse(readFileSync(config.keys_file, 'utf8'));
const published = config.published ?? signingKeys.map((k) => k.kid);

// With "tls": {"cert_file", "key_file"} the provider serves https, and /test/sign is served on
// a plain-HTTP port of its own besides (the tests' own client speaks plain HTTP only).
const tls = config.tls && { cert: readFileSync(config.tls.cert_file), key: readFileSync(config.tls.key_file) };
const server = tls ? https.createServer(tls) : http.createServer();
await new Promise((resolve) => server.listen(config.port ?? 0, '127.0.0.1', resolve));
const issuer = `${tls ? 'https' : 'http'}://127.0.0.1:${server.address().port}`;
const signer = tls ? http.createServer() : server;
if (tls) {
  await new Promise((resolve) => signer.listen(0, '127.0.0.1', resolve));
}

const clients = Object.keys(config.clients).map((id) => ({
  client_id: id,
  client_secret: 'secret',
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  token_endpoint_auth_method: 'client_secret_post',
}));

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: signingKeys.filter((k) => published.includes(k.kid)) },
  cookies: { keys: ['leasehold-tests'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:leasehold',
      getResourceServerInfo: () => ({
        scope: 'licenses',
        audience: config.audience,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 300,
      }),
      useGrantedResource: () => true,
    },
  },
  extraTokenClaims: async (ctx, token) => config.clients[token.clientId] ?? {},
  ttl: { ClientCredentials: 300 },
});

async function sign(body) {
  const { claims, kid } = JSON.parse(body);
  const jwk = signingKeys.find((k) => k.kid === (kid ?? signingKeys[0].kid));
  const key = await importJWK(jwk, 'RS256');
  return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ: 'JWT' }).sign(key);
}

const callback = provider.callback();
function serve(req, res) {
  if (req.method === 'POST' && req.url === '/test/sign') {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', async () => {
      try {
        const token = await sign(body);
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(token) }).end(token);
      } catch (e) {
        const why = String(e);
        res.writeHead(400, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(why) }).end(why);
      }
    });
    return;
  }
  callback(req, res);
}
server.on('request', serve);
if (tls) {
  signer.on('request', serve);
}

console.log(`listening ${issuer} http://127.0.0.1:${signer.address().port}`);
