import fs from 'node:fs/promises';
import { ConfigError, loadConfig, loadEnvFile } from './config.js';
import { DatabaseDamagedError, DataDirLockedError, databaseOptions, openDatabase } from './db/database.js';
import { createLogger } from './logger.js';
import { startTracing } from './telemetry/tracing.js';

async function main(): Promise<void> {
  const envFile = loadEnvFile();
  const config = loadConfig();
  // Start-up in parallel: the database (its own thread in embedded mode: PGlite's WASM, initdb,
  // migrations) opens while this thread loads the rest of the gateway's modules (~1-2 s), which
  // app.js pulls in. Tracing first, when on: Prisma's instrumentation precedes its client.
  if (config.otel.endpoint) await startTracing({ serviceName: config.otel.serviceName, endpoint: config.otel.endpoint });
  const log = createLogger(config.logLevel);
  await fs.mkdir(config.dataDir, { recursive: true });
  const database = openDatabase({ ...databaseOptions(config), log: (msg) => log.info(msg) });
  // Awaited by createApp; a failure before then must not count as unhandled.
  database.catch(() => {});
  const { createApp } = await import('./app.js');
  const app = await createApp(config, { database });
  const url = await app.start();

  const logger = app.runtime.log;
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    // The stop is graceful while it can be; past SHUTDOWN_TIMEOUT_MS the process goes anyway (as a
    // crash would: acknowledged writes are committed, running jobs are taken up again by the next start).
    setTimeout(() => {
      logger.error({ timeoutMs: config.shutdownTimeoutMs }, 'graceful shutdown took too long; exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs).unref();
    app.stop().then(
      () => process.exit(0),
      (err) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  // Before the banner: whoever reads "listening" may send SIGTERM at once, and it must find the handler.
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  const mode = app.database.mode === 'embedded' ? `embedded PGlite in ${config.dataDir}` : 'Postgres (DATABASE_URL)';
  const lines = [
    `Volumes Gateway listening on ${url}`,
    `  GraphQL   ${url}/graphql${config.graphiql ? ' (GraphiQL enabled)' : ''}`,
    `  REST      ${url}/v1  (OpenAPI: ${url}/v1/openapi.json)`,
    `  Health    ${url}/healthz  ${url}/readyz`,
    ...(config.console.enabled ? [`  Console   ${url}/console`] : []),
    `  Database  ${mode}; blobs: ${app.blobStore.kind}`,
    `  Config    ${envFile ? `${envFile} (environment variables take precedence)` : 'environment only (no .env in the working directory)'}`,
  ];
  if (app.adminKeyFile) lines.push(`  Admin key ${app.adminApiKey}  (kept in ${app.adminKeyFile})`);
  else if (!app.adminApiKey) lines.push('  No ADMIN_API_KEY set: only org API keys can call the API.');
  // Printed plainly because a person reads this once at start-up; the same facts (never the key) as a
  // log line for collectors.
  process.stdout.write(`${lines.join('\n')}\n`);
  logger.info(
    { url, database: app.database.mode, blobs: app.blobStore.kind, envFile: envFile ?? null, graphiql: config.graphiql },
    'listening',
  );
}

main().catch((err) => {
  if (err instanceof ConfigError || err instanceof DataDirLockedError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(78);
  }
  if (err instanceof DatabaseDamagedError) {
    // Plain text, whatever LOG_LEVEL says: a person has to act on it (the JSON log line follows for log collectors).
    process.stderr.write(`${err.message}\n`);
  }
  createLogger('info').fatal({ err }, 'failed to start');
  process.exit(1);
});
