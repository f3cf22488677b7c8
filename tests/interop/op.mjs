// A real OpenID provider for authgate's interop tests: oidc-provider with the client
// credentials grant and resource indicators, issuing JWT access tokens (RFC 9068), plus token
// introspection (RFC 7662, at /token/introspection) and revocation (RFC 7009, at
// /token/revocation), both listed in the discovery document.
//
//   node op.mjs PORT KEYS_JSON [NEW_KID]
//
// PORT 0 picks a free port. KEYS_JSON holds private JWKs (created if missing); with NEW_KID a
// fresh RSA key is generated and put first, so it signs from now on while the older keys
// stay published. Prints "OP_READY <port>" once it listens.
//
// Clients (all authenticate at the token, introspection and revocation endpoints):
// - orders-client / orders-client-secret-that-is-long-enough (client_secret_basic): the
//   client credentials grant, scopes read and write. With resource=https://orders.example.com
//   the access token is an RS256 JWT for audience orders-api (300 s); without a resource it
//   is an opaque token (no aud, 600 s), which only introspection can validate. It may revoke
//   its own tokens.
// - authgate / authgate-introspection-secret-long-enough (client_secret_basic): the gateway;
//   no grants, it may introspect the tokens of any client. oidc-provider treats
//   client_secret_basic and client_secret_post as one method, so the secret may also come in
//   the form body (client_id, client_secret).
// - dpop-client / dpop-client-secret-that-is-long-enough (client_secret_basic): as
//   orders-client, but registered with dpop_bound_access_tokens, so the token endpoint
//   refuses it without a DPoP proof (400 invalid_grant). The token is bound to the proof's
//   key: a JWT access token carries cnf.jkt (the RFC 7638 thumbprint of the proof's jwk), an
//   opaque one has it in its introspection answer (cnf: { jkt }); token_type is DPoP.
// - mtls-client / mtls-client-secret-that-is-long-enough (client_secret_basic): as
//   orders-client, registered with tls_client_certificate_bound_access_tokens. The OP listens
//   on plain http, so the client certificate comes in the request header x-client-cert
//   (standard base64 of the certificate's DER, no PEM armour, no colons); without one the
//   token endpoint refuses (400 invalid_grant). The token carries cnf["x5t#S256"] (base64url
//   SHA-256 of that DER), in the JWT and in the introspection answer. Any client that sends
//   the header gets no binding from it: only this client's tokens are bound. The OP does not
//   check the certificate's chain (RFC 8705 binding needs only its thumbprint).
// - authgate-jwt (private_key_jwt, ES256 only, kid gw1): the gateway again, registered only
//   when the environment variable OP_CLIENT_KEY_PEM names a file: a fresh P-256 key pair is
//   generated at startup and its private key written there (PKCS#8 PEM) before OP_READY. The
//   client assertion needs iss = sub = authgate-jwt, aud = the issuer, the token endpoint or
//   the introspection endpoint URL, exp, and a jti that is accepted once.
// Introspection answers JSON; with Accept: application/token-introspection+jwt (and no
// application/json before it) it answers an RS256 JWT instead (RFC 9701, for any client: RS256
// is oidc-provider's default introspection_signed_response_alg): header typ
// token-introspection+jwt, claims iss, aud (the calling client_id), iat and
// token_introspection (the JSON response), no exp. The OP refuses to introspect or revoke JWT
// access tokens (400 unsupported_token_type): only opaque tokens have state it can look up.
//
// DPoP (oidc-provider's dPoP feature; proofs ES256, Ed25519 or EdDSA): any client may send a
// proof and gets a bound token; dpop-client must. Every proof must carry a server nonce: one
// without (or with a stale one) is answered 400 {"error":"use_dpop_nonce"} with the nonce in
// the DPoP-Nonce header, and the client retries with it in the proof's nonce claim (RFC 9449
// section 8). A nonce changes each minute, is accepted for about two more and survives key
// rotations. The proof's htu is the token endpoint, http://127.0.0.1:PORT/token; its jti is
// accepted once.
//
// Key rotation without a restart: a line "rotate KID" on stdin puts a fresh key KID first
// (the older ones stay published) and swaps in a provider that signs with it, on the same
// listening socket; it prints "OP_ROTATED KID". The providers share one in-memory store, so
// opaque tokens issued (or revoked) before a rotation stay so. A restart would release the
// port, and on a busy machine another test can take it before the OP binds it again (the
// issuer URL, port included, must not change).
import http from 'node:http';
import fs from 'node:fs';
import readline from 'node:readline';
import { X509Certificate, generateKeyPair, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import Provider from 'oidc-provider';
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

const [port, keysFile, newKid] = process.argv.slice(2);
let keys = fs.existsSync(keysFile) ? JSON.parse(fs.readFileSync(keysFile, 'utf8')) : [];

// Keys are made with the asynchronous generateKeyPair: Node 20's generateKeyPairSync can
// deadlock when a garbage collection runs during it (the main thread waits forever on a
// mutex in the key generation job's destructor), which left about one OP start in 300
// hanging before OP_READY.
const generate = promisify(generateKeyPair);

// The private_key_jwt gateway client's public key, when OP_CLIENT_KEY_PEM asks for one; made
// once, so it survives key rotations.
const clientKeyFile = process.env.OP_CLIENT_KEY_PEM;
let clientJwk;
if (clientKeyFile) {
  const { publicKey, privateKey } = await generate('ec', { namedCurve: 'P-256' });
  fs.writeFileSync(clientKeyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }));
  clientJwk = { ...publicKey.export({ format: 'jwk' }), kid: 'gw1', alg: 'ES256', use: 'sig' };
}

// Opaque tokens, revocations and used client assertion jtis live in this store, shared by the
// providers a rotation swaps in (by default each provider gets an empty one of its own).
const adapter = createMemoryAdapter();

// The DPoP nonce secret: one for every provider a rotation swaps in, so a nonce issued
// before a rotation stays valid.
const nonceSecret = randomBytes(32);

// RFC 8705 behind plain http: the client certificate from the x-client-cert header (base64
// DER). A value that is not a certificate is a 500, which a test notices.
function getCertificate(ctx) {
  const value = ctx.get('x-client-cert');
  return value ? new X509Certificate(Buffer.from(value, 'base64')) : undefined;
}

// Clients of the client credentials grant.
const grantClient = {
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
};

// Gateway clients: they only call the introspection (and revocation) endpoints.
const gateway = { grant_types: [], redirect_uris: [], response_types: [] };

async function addKey(kid) {
  const { privateKey } = await generate('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  keys = [{ ...jwk, kid, alg: 'RS256', use: 'sig' }, ...keys];
  fs.writeFileSync(keysFile, JSON.stringify(keys));
}

function provider(issuer) {
  return new Provider(issuer, {
    adapter,
    clients: [{
      ...grantClient,
      client_id: 'orders-client',
      client_secret: 'orders-client-secret-that-is-long-enough',
    }, {
      ...grantClient,
      client_id: 'dpop-client',
      client_secret: 'dpop-client-secret-that-is-long-enough',
      dpop_bound_access_tokens: true,
    }, {
      ...grantClient,
      client_id: 'mtls-client',
      client_secret: 'mtls-client-secret-that-is-long-enough',
      tls_client_certificate_bound_access_tokens: true,
    }, {
      ...gateway,
      client_id: 'authgate',
      client_secret: 'authgate-introspection-secret-long-enough',
      token_endpoint_auth_method: 'client_secret_basic',
    }, ...(clientJwk ? [{
      ...gateway,
      client_id: 'authgate-jwt',
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      jwks: { keys: [clientJwk] },
      introspection_signed_response_alg: 'RS256',
    }] : [])],
    jwks: { keys },
    scopes: ['read', 'write'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // No resource parameter, no resource server: the access token is opaque.
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'read write',
          audience: 'orders-api',
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
      introspection: {
        enabled: true,
        // Confidential clients (the gateway) may introspect any token; a public client only
        // its own (oidc-provider's default, made explicit).
        allowedPolicy: (ctx, client, token) => client.clientAuthMethod !== 'none'
          || token.clientId === client.clientId,
      },
      jwtIntrospection: { enabled: true },
      dPoP: { enabled: true, nonceSecret, requireNonce: () => true },
      mTLS: { enabled: true, certificateBoundAccessTokens: true, getCertificate },
      revocation: { enabled: true },
    },
  });
}

if (newKid) await addKey(newKid);

const server = http.createServer();
server.on('error', (e) => {
  console.error(`OP_FAILED ${e.message}`);
  process.exit(1);
});
server.listen(Number(port), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  let handler = provider(issuer).callback();
  server.on('request', (req, res) => handler(req, res));
  readline.createInterface({ input: process.stdin }).on('line', async (line) => {
    const [cmd, kid] = line.trim().split(/\s+/);
    if (cmd === 'rotate' && kid) {
      await addKey(kid);
      handler = provider(issuer).callback();
      console.log(`OP_ROTATED ${kid}`);
    }
  });
  console.log(`OP_READY ${server.address().port}`);
});
