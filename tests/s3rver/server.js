// Starts @20minutes/s3rver (a fake S3 that checks SigV4 signatures and expiry) for the test suite.
//
// usage: node server.js PORT DIRECTORY   (or S3RVER_PORT / S3RVER_DIR; NODE_PATH must reach node_modules)
// Listens on 127.0.0.1 only, prints one line "S3RVER READY http://127.0.0.1:PORT" once it accepts
// connections, and exits cleanly on SIGTERM/SIGINT. Credentials are s3rver's built-in S3RVER/S3RVER.
'use strict';

const S3rver = require('@20minutes/s3rver');

const port = Number(process.argv[2] || process.env.S3RVER_PORT || 0);
const directory = process.argv[3] || process.env.S3RVER_DIR;
if (!directory) {
  console.error('usage: node server.js PORT DIRECTORY');
  process.exit(2);
}

const server = new S3rver({
  address: '127.0.0.1',
  port,
  directory,
  silent: true,
  // Path-style only: a vhost lookup on "127.0.0.1" must never be mistaken for a bucket name.
  vhostBuckets: false,
  allowMismatchedSignatures: false,
});

server.run().then(
  (address) => {
    console.log(`S3RVER READY http://${address.address}:${address.port}`);
  },
  (err) => {
    console.error(`S3RVER FAILED ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  },
);

const stop = () => {
  server.close().then(
    () => process.exit(0),
    () => process.exit(0),
  );
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
