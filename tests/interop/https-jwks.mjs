// Serves a JWKS document over https with the test certificate (tests/fixtures/tls), for the
// `jwks_ca_file` tests.   node https-jwks.mjs JWKS_FILE   → prints "HTTPS_READY <port>"
import https from 'node:https';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const tls = fileURLToPath(new URL('../fixtures/tls/', import.meta.url));
const doc = fs.readFileSync(process.argv[2]);
const server = https.createServer({
  key: fs.readFileSync(tls + 'server.key'),
  cert: fs.readFileSync(tls + 'server.pem'),
}, (req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(doc);
});
server.listen(0, '127.0.0.1', () => console.log(`HTTPS_READY ${server.address().port}`));
