/** Listens on PORT/HOST, prints the URL the harness waits for, and on SIGTERM/SIGINT closes, releases, exits. */
export function serve(server, release) {
  server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? '127.0.0.1', () => {
    const { address, port } = server.address();
    process.stdout.write(`listening on http://${address}:${port}\n`);
  });
  const stop = () => {
    server.closeAllConnections();
    server.close();
    release().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
