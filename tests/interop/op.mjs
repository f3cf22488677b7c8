// A real OpenID provider for authgate's interop tests: oidc-provider with the client
// credentials grant and resource indicators, issuing JWT access tokens (RFC 9068).
//
//   node op.mjs PORT KEYS_JSON [NEW_KID]
//
// PORT 0 picks a free port. KEYS_JSON holds private JWKs (created if missing); with NEW_KID a
// fresh RSA key is generated and put first, so it signs from now on while the older keys
// stay published. Prints "OP_READY <port>" once it listens.
//
// Key rotation without a restart: a line "rotate KID" on stdin puts a fresh key KID first
// (the older ones stay published) and swaps in a provider that signs with it, on the same
// listening socket; it prints "OP_ROTATED KID". A restart would release the port, and on a
// busy machine another test can take it before the OP binds it again (the issuer URL, port
// included, must not change).
import http from 'node:http';
import fs from 'node:fs';
import readline from 'node:readline';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const [port, keysFile, newKid] = process.argv.slice(2);
let keys = fs.existsSync(keysFile) ? JSON.parse(fs.readFileSync(keysFile, 'utf8')) : [];

function addKey(kid) {
  const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  keys = [{ ...jwk, kid, alg: 'RS256', use: 'sig' }, ...keys];
  fs.writeFileSync(keysFile, JSON.stringify(keys));
}

function provider(issuer) {
  return new Provider(issuer, {
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
}

if (newKid) addKey(newKid);

const server = http.createServer();
server.on('error', (e) => {
  console.error(`OP_FAILED ${e.message}`);
  process.exit(1);
});
server.listen(Number(port), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  let handler = provider(issuer).callback();
  server.on('request', (req, res) => handler(req, res));
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    const [cmd, kid] = line.trim().split(/\s+/);
    if (cmd === 'rotate' && kid) {
      addKey(kid);
      handler = provider(issuer).callback();
      console.log(`OP_ROTATED ${kid}`);
    }
  });
  console.log(`OP_READY ${server.address().port}`);
});
