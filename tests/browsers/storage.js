// An S3-compatible storage over HTTPS for the browser matrix: @20minutes/s3rver (it checks SigV4
// signatures and presigned-URL expiry) with a test CA leaf and per-bucket CORS, as a third site.
//
// usage: node storage.js CONFIG.json   (NODE_PATH must reach node_modules)
// CONFIG.json: {"address", "port", "directory", "cert", "key", "buckets": [{"name", "cors"}]}, where
// "cors" is a CORSConfiguration XML document or null (no CORS at all). Prints one line
// "STORAGE READY https://ADDRESS:PORT" once it accepts connections; exits on SIGTERM/SIGINT.
'use strict';

const fs = require('node:fs');
const S3rver = require('@20minutes/s3rver');

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const server = new S3rver({
  address: config.address,
  port: config.port,
  directory: config.directory,
  key: fs.readFileSync(config.key),
  cert: fs.readFileSync(config.cert),
  silent: true,
  vhostBuckets: false, // path-style only
  allowMismatchedSignatures: false,
  configureBuckets: config.buckets.map((b) => ({ name: b.name, configs: b.cors ? [b.cors] : [] })),
});

server.run().then(
  (address) => console.log(`STORAGE READY https://${address.address}:${address.port}`),
  (err) => {
    console.error(`STORAGE FAILED ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  },
);

const stop = () => {
  server.close().then(() => process.exit(0), () => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
