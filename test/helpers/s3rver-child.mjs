// Runs s3rver in its own process (started by test/helpers/s3rver.ts). s3rver encrypts ListObjectsV2
// continuation tokens with DES, which Node 17+ only offers under --openssl-legacy-provider: this
// process gets that flag so the gateway and the tests never need it.
// Usage: node --openssl-legacy-provider s3rver-child.mjs <directory>
// Prints one JSON line {"port": n} once listening; exits when stdin closes (the parent went away)
// or on SIGTERM/SIGINT.
import S3rver from 's3rver';

const directory = process.argv[2];
if (!directory) {
  process.stderr.write('usage: s3rver-child.mjs <directory>\n');
  process.exit(2);
}

const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory });
const { port } = await server.run();
process.stdout.write(`${JSON.stringify({ port })}\n`);

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  server.httpServer.closeAllConnections();
  server.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop).on('close', stop).resume();
