// A real OpenID provider for authgate's interop tests: oidc-provider with the client
// credentials grant and resource indicators, issuing JWT access tokens (RFC 9068).
//
//   node op.mjs PORT KEYS_JSON [NEW_KID]
//
// PORT 0 picks a free port. KEYS_JSON holds private JWKs (created if missing); with NEW_KID a
// fresh RSA key is generated and put first, so it signs from now on while the older keys
// stay published (key rotation). Prints "OP_READY <port>" once it listens.
import http from 'node:http';
import fs from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const [port, keysFile, newKid] = process.argv.slice(2);
let keys = fs.existsSync(keysFile) ? JSON.parse(fs.readFileSync(keysFile, 'utf8')) : [];
if (newKid) {
  const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  keys = [{ ...jwk, kid: newKid, alg: 'RS256', use: 'sig' }, ...keys];
  fs.writeFileSync(keysFile, JSON.stringify(keys));
}

const server = http.createServer();
server.listen(Number(port), '127.0.0.1', () => {
  const actual = server.address().port;
  const provider = new Provider(`http://127.0.0.1:${actual}`, {
    clients: [{
      client_id: 'orders-client',
      client_secret: 'orders-client-secret-that-is-long-enough',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
    }],
    jwks: { keys },
    scopes: ['read', 'write'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'https://orders.example.com',
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'read write',
          audience: 'orders-api',
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
  });
  server.on('request', provider.callback());
  console.log(`OP_READY ${actual}`);
});
