#!/usr/bin/env node
/**
 * `volumes-gateway-keys` (`npm run -s keys -- …`, `node dist/cli/keys.js …`): creates, lists and
 * revokes organisation API keys directly in the gateway's database. It is how server mode without
 * ADMIN_API_KEY gets its first key; embedded mode also generates a platform key into DATA_DIR.
 *
 * - Configured exactly like the gateway (src/config.ts: the environment, then `.env` or ENV_FILE),
 *   and opened the same way (openDatabase: pending migrations are applied, as at every gateway
 *   start; embedded mode takes the DATA_DIR lock, so it refuses while a gateway runs there).
 * - Every rule is the domain's (src/domain/access/api-keys.ts): key format, hashing, scope
 *   validation, app-key limits, organisations coming into being on first use. The CLI acts as the
 *   platform key: whoever holds the database's credentials holds every key already.
 * - Nothing else starts: no HTTP server, no job workers, no maintenance sweep.
 * - A revocation reaches running gateways as a revocation through the API does: at once through
 *   REDIS_URL when set, otherwise when their cached lookup expires (KEY_CACHE_TTL_MS, default 10 s).
 *
 * Exit status: 0 done, 1 not found or failed, 2 usage error (the flag is named), 78 invalid
 * configuration or DATA_DIR in use (as the gateway itself exits).
 */
import fs from 'node:fs';
import path from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { type Config, ConfigError, loadConfig, loadEnvFile } from '../config.js';
import { DataDirLockedError } from '../db/data-dir-lock.js';
import { CreateApiKeyInput, createApiKey, listApiKeys, revokeApiKey } from '../domain/access/api-keys.js';
import { type Principal, SCOPES } from '../domain/access/principal.js';
import { NotFoundError, ValidationError } from '../domain/shared/errors.js';
import { ExternalId } from '../domain/shared/fields.js';
import { MAX_LIMIT } from '../domain/shared/pagination.js';
import type { Runtime } from '../domain/shared/runtime.js';
import { parseInput } from '../domain/shared/validation.js';
import type { ApiKey } from '../generated/prisma/client.js';

// The database, the runtime and the JSON shapes are imported when a command runs (below), not
// here: a usage error is answered without loading Prisma, the schema engine or the AWS SDK.

const PROG = 'volumes-gateway-keys';
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_CONFIG = 78;

const USAGE = `Usage: ${PROG} <command> [options]      (from a checkout: npm run -s keys -- <command> [options])

Creates, lists and revokes an organisation's API keys directly in the gateway's database, configured
like the gateway (environment, then .env or ENV_FILE): DATABASE_URL, or the embedded database in
DATA_DIR while no gateway runs on it. Pending migrations are applied first, as a gateway start does.

Commands:
  create --org <org> --scopes <scope,...> [--name <name>] [--app <app_id>] [--json]
        Creates a key and prints its id and secret. The secret is shown only this once.
  list --org <org> [--json]
        Lists the organisation's keys (never their secrets).
  revoke --org <org> <key_id> [--json]
        Revokes a key. Gateways sharing REDIS_URL drop it at once; others within KEY_CACHE_TTL_MS.

Scopes: ${SCOPES.join(', ')} (admin: all of them within the org).
An --app key acts only through that app's mounts and cannot hold admin or workspaces:write.
Exit status: 0 done, 1 not found or failed, 2 usage error, 78 configuration error or DATA_DIR in use.
`;

/** The command line was wrong: one line naming the flag, exit 2. */
class UsageError extends Error {}

/** A failure the user can act on (not found, no database): one line, its exit status. */
class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = EXIT_FAILED,
  ) {
    super(message);
  }
}

type Command =
  | { name: 'help' }
  | { name: 'create'; org: string; input: { name: string; scopes: string[]; app_id?: string }; json: boolean }
  | { name: 'list'; org: string; json: boolean }
  | { name: 'revoke'; org: string; keyId: string; json: boolean };

/** Where each field the domain validates came from on the command line. */
const FLAG_OF: Record<string, string> = { org_id: '--org', name: '--name', scopes: '--scopes', app_id: '--app' };

/** A domain ValidationError as one line naming the flags. */
function describeValidation(err: ValidationError): string {
  return err.issues
    .map((i) => {
      const flag = FLAG_OF[String(i.loc[0])] ?? i.loc.join('.');
      const got = typeof i.input === 'string' ? ` (got '${i.input}')` : '';
      return `${flag}: ${i.msg}${got}`;
    })
    .join('; ');
}

function parseCommand(argv: string[]): Command {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    if (name === undefined) throw new UsageError(`a command is required: create, list or revoke (see ${PROG} --help)`);
    return { name: 'help' };
  }
  if (name !== 'create' && name !== 'list' && name !== 'revoke') {
    throw new UsageError(`unknown command '${name}': use create, list or revoke (see ${PROG} --help)`);
  }
  const options: NonNullable<ParseArgsConfig['options']> = {
    org: { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
    ...(name === 'create'
      ? { name: { type: 'string' }, scopes: { type: 'string' }, app: { type: 'string' }, 'expires-in': { type: 'string' } }
      : {}),
  };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: rest, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(describeParseError(name, err as Error & { code?: string }));
  }
  const { values, positionals } = parsed;
  if (values.help) return { name: 'help' };
  if (values['expires-in'] !== undefined) {
    throw new UsageError(
      '--expires-in: API keys do not expire in this gateway (a key has no expiry); revoke it when it is no longer needed',
    );
  }
  const org = values.org as string | undefined;
  if (org === undefined) throw new UsageError(`--org is required (${name} --org <org>)`);
  // The domain's rule for organisation ids (enterOrg applies it again), checked before any database is opened.
  parseInput(ExternalId, org, ['org_id']);
  const json = values.json === true;
  const wantPositionals = name === 'revoke' ? 1 : 0;
  if (positionals.length > wantPositionals) {
    throw new UsageError(`unexpected argument '${positionals[wantPositionals]}'${name === 'revoke' ? ' (one key id only)' : ''}`);
  }

  if (name === 'create') {
    const scopes = values.scopes as string | undefined;
    if (scopes === undefined) throw new UsageError(`--scopes is required: a comma-separated list of ${SCOPES.join(', ')}`);
    const input = {
      name: (values.name as string | undefined) ?? 'keys-cli',
      scopes: scopes
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== ''),
      ...(values.app !== undefined ? { app_id: values.app as string } : {}),
    };
    // The domain's own schema, so a bad scope is a usage error before anything is opened or written.
    parseInput(CreateApiKeyInput, input);
    return { name, org, input, json };
  }
  if (name === 'list') return { name, org, json };
  const keyId = positionals[0];
  if (keyId === undefined) throw new UsageError('the key id is required (revoke --org <org> <key_id>; list shows the ids)');
  return { name, org, keyId, json };
}

/** node:util parseArgs' errors as one line naming the option. */
function describeParseError(command: string, err: Error & { code?: string }): string {
  const quoted = /'(-[^' ]*)/.exec(err.message)?.[1];
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown option ${quoted ?? err.message} for ${command} (see ${PROG} --help)`;
  if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') return `${quoted ?? 'an option'} needs a value`;
  return err.message.split('. ')[0] ?? err.message;
}

const out = (text: string) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
const note = (text: string) => process.stderr.write(`${text}\n`);

/** Whoever can run this with the database's credentials could write any key: it acts as the platform key. */
const PLATFORM: Principal = { kind: 'platform', subject: 'admin' };

async function allKeys(rt: Runtime, org: string): Promise<ApiKey[]> {
  const keys: ApiKey[] = [];
  let cursor: string | undefined;
  do {
    const page = await listApiKeys(rt, PLATFORM, org, { limit: MAX_LIMIT, ...(cursor ? { cursor } : {}) });
    keys.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return keys;
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length))) ?? [];
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c] ?? 0))).join('  ')).join('\n');
}

async function run(cmd: Exclude<Command, { name: 'help' }>, rt: Runtime, config: Config): Promise<void> {
  // The REST layer's JSON for a key, so --json prints what GET /v1/orgs/{org}/api-keys answers.
  const { apiKeyJson } = await import('../rest/serializers.js');
  if (cmd.name === 'create') {
    const { secret, key } = await createApiKey(rt, PLATFORM, cmd.org, cmd.input, []);
    if (cmd.json) {
      out(JSON.stringify({ api_key: secret, key: apiKeyJson(key) }));
      return;
    }
    out(
      table([
        ['key_id:', key.id],
        ['org_id:', key.orgId],
        ['name:', key.name],
        ['scopes:', key.scopes.join(',')],
        ...(key.appId ? [['app_id:', key.appId]] : []),
        ['secret:', secret],
      ]),
    );
    note('The secret is shown only this once (only its sha256 is stored): keep it now.');
    return;
  }

  if (cmd.name === 'list') {
    const keys = await allKeys(rt, cmd.org);
    if (cmd.json) {
      out(JSON.stringify({ total: keys.length, api_keys: keys.map(apiKeyJson) }));
      return;
    }
    if (keys.length === 0) {
      out(`No API keys in org ${cmd.org}.`);
      return;
    }
    const when = (d: Date | null) => (d ? d.toISOString().replace(/\.\d{3}Z$/, 'Z') : '-');
    out(
      table([
        ['KEY ID', 'NAME', 'PREFIX', 'SCOPES', 'APP', 'CREATED', 'LAST USED', 'REVOKED'],
        ...keys.map((k) => [
          k.id,
          k.name,
          k.prefix,
          k.scopes.join(','),
          k.appId ?? '-',
          when(k.createdAt),
          when(k.lastUsedAt),
          when(k.revokedAt),
        ]),
      ]),
    );
    return;
  }

  const key = await revokeApiKey(rt, PLATFORM, cmd.org, cmd.keyId).catch((err: unknown) => {
    if (err instanceof NotFoundError) throw new CliError(`no API key ${cmd.keyId} in org ${cmd.org} (list shows the ids)`);
    throw err;
  });
  if (cmd.json) out(JSON.stringify({ message: 'API key revoked successfully', key: apiKeyJson(key) }));
  else out(`Revoked API key ${key.id} ("${key.name}") in org ${key.orgId} at ${key.revokedAt?.toISOString()}.`);
  if (config.databaseUrl) {
    note(
      config.redisUrl
        ? 'Running gateways that share REDIS_URL drop it at once.'
        : `Running gateways refuse it at their next lookup: at once if they have not used it lately, otherwise within KEY_CACHE_TTL_MS ` +
            `(theirs; ${config.keyCacheTtlMs} ms here). Gateways sharing REDIS_URL are told at once.`,
    );
  }
}

/** Null when Redis answers; otherwise why not (the revocation then relies on the gateways' cache lifetime). */
async function redisProblem(url: string): Promise<string | null> {
  const { Redis } = await import('ioredis');
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.ping();
    return null;
  } catch (err) {
    return (err as Error).message;
  } finally {
    client.disconnect();
  }
}

/** Embedded mode opens an existing database only: a mistyped DATA_DIR must not get a new, empty one. */
function requireEmbeddedDatabase(dataDir: string, pgdataDirName: string): void {
  const pgdata = path.join(dataDir, pgdataDirName);
  let entries: string[] = [];
  try {
    entries = fs.readdirSync(pgdata);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (entries.length === 0) {
    throw new CliError(
      `no embedded database in DATA_DIR ${dataDir} (${pgdata} is missing or empty): set DATA_DIR to the gateway's, ` +
        'or DATABASE_URL for server mode (start an embedded gateway once to create its database)',
    );
  }
}

async function main(argv: string[]): Promise<number> {
  let cmd: Command;
  try {
    cmd = parseCommand(argv);
  } catch (err) {
    if (err instanceof ValidationError) throw new UsageError(describeValidation(err));
    throw err;
  }
  if (cmd.name === 'help') {
    out(USAGE);
    return 0;
  }
  loadEnvFile();
  let config = loadConfig();
  verbose = config.logLevel === 'debug' || config.logLevel === 'trace';
  const { DatabaseDamagedError, openDatabase, PGDATA_DIR_NAME } = await import('../db/database.js');
  if (!config.databaseUrl) requireEmbeddedDatabase(config.dataDir, PGDATA_DIR_NAME);
  // Only a revocation has anyone to tell; an unreachable Redis must not turn it into a crash afterwards.
  if (cmd.name !== 'revoke' || !config.databaseUrl) config = { ...config, redisUrl: undefined };
  else if (config.redisUrl) {
    const problem = await redisProblem(config.redisUrl);
    if (problem) {
      note(`warning: REDIS_URL does not answer (${problem}); running gateways will not be told of the revocation at once.`);
      config = { ...config, redisUrl: undefined };
    }
  }

  const database = await openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    poolSize: config.databasePoolSize,
    poolTimeoutMs: config.databasePoolTimeoutMs,
    // One line when migrations were applied ("applied migrations: …"), not the engine's line per migration.
    log: (msg) => {
      if (!/^(No pending migrations\.|Applied migration )/.test(msg)) note(msg);
    },
    onLost: (err) => {
      note(`${PROG}: the embedded database stopped: ${err.message}`);
      process.exit(EXIT_FAILED);
    },
  }).catch((err: unknown) => {
    // Its message is the recovery procedure (several lines, meant for a person).
    if (err instanceof DatabaseDamagedError) throw new CliError(err.message);
    throw err;
  });
  try {
    const [{ buildRuntime }, { createLogger }, { default: pino }] = await Promise.all([
      import('../runtime.js'),
      import('../logger.js'),
      import('pino'),
    ]);
    // The gateway's runtime, minus what the CLI never uses: the local store's download-signing key
    // is not read from (or written into) DATA_DIR, since nothing here signs a URL.
    const built = await buildRuntime(
      { ...config, downloadSigningSecret: config.downloadSigningSecret ?? 'unused-by-the-keys-cli-unused-by-the-keys-cli' },
      database,
      createLogger(config.logLevel, pino.destination({ dest: 2, sync: true })),
      () => config.publicUrl ?? `http://${config.host}:${config.port}`,
    );
    try {
      await run(cmd, built.rt, config);
    } finally {
      await built.close();
    }
  } finally {
    await database.close();
  }
  return 0;
}

/** The exit status and one line for a failure; the stack only at LOG_LEVEL debug or trace. */
function failure(err: unknown): { code: number; line: string } {
  if (err instanceof UsageError) return { code: EXIT_USAGE, line: err.message };
  if (err instanceof ValidationError) return { code: EXIT_USAGE, line: describeValidation(err) };
  if (err instanceof CliError) return { code: err.exitCode, line: err.message };
  if (err instanceof NotFoundError) {
    const d = err.details as { resource_type?: string; resource_id?: string };
    return { code: EXIT_FAILED, line: `${d.resource_type ?? 'resource'} ${d.resource_id ?? ''} not found` };
  }
  if (err instanceof ConfigError) return { code: EXIT_CONFIG, line: err.message };
  if (err instanceof DataDirLockedError) {
    return {
      code: EXIT_CONFIG,
      line: `cannot open the embedded database while a gateway runs on it: ${err.message} Stop that gateway first, or create the key through its API (POST /v1/orgs/{org}/api-keys with its admin key).`,
    };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: EXIT_FAILED, line: `failed: ${message.trim().split('\n')[0]}` };
}

/** Stack traces only when asked for (LOG_LEVEL debug or trace), once the configuration is known. */
let verbose = false;

async function exit(code: number): Promise<never> {
  // Pipes are asynchronous on some platforms: let the secret reach the reader before exiting.
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
  process.exit(code);
}

process.on('unhandledRejection', (err) => {
  note(`${PROG}: ${failure(err).line}`);
  if (verbose && err instanceof Error) note(err.stack ?? '');
  process.exit(EXIT_FAILED);
});

main(process.argv.slice(2)).then(exit, async (err: unknown) => {
  const { code, line } = failure(err);
  note(`${PROG}: ${line}`);
  if (verbose && err instanceof Error && code === EXIT_FAILED) note(err.stack ?? '');
  await exit(code);
});
