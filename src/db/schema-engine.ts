/**
 * Prisma's schema engine (the thing behind `prisma migrate`) running in-process as WebAssembly.
 *
 * Why not the CLI: offline, every `prisma migrate` command tries to download the native engine;
 * with `PRISMA_SCHEMA_ENGINE_BINARY=/bin/true` it prints success and does nothing. The WASM build
 * of the same engine talks to the database through a Prisma driver adapter, so it works with both
 * the embedded PGlite and a real server, and writes `_prisma_migrations` exactly like the CLI.
 *
 * The adapters need a few fixes to be usable by the engine (see `MigrationAdapterFactory`).
 *
 * One file (~460 lines) because it is one protocol adapter: loading the WASM engine, the driver
 * adapter it calls back into, and the migrate/diff commands we use from it.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PrismaPg } from '@prisma/adapter-pg';
import {
  bindMigrationAwareSqlAdapterFactory,
  ColumnTypeEnum,
  DriverAdapterError,
  type SqlDriverAdapter,
  type SqlMigrationAwareDriverAdapterFactory,
} from '@prisma/driver-adapter-utils';
import type { SchemaEngine, SchemaFilter } from '@prisma/schema-engine-wasm/schema_engine_bg';
import * as glue from '@prisma/schema-engine-wasm/schema_engine_bg';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import { PGLITE_EXTENSIONS } from './pglite-extensions.js';

export type {
  DiffTarget,
  MigrationDirectory,
  MigrationList,
  SchemaEngine,
  SchemaFilter,
} from '@prisma/schema-engine-wasm/schema_engine_bg';

/** Filter that manages every table and enum (we declare no external ones in prisma.config.ts). */
export const NO_FILTER: SchemaFilter = { externalTables: [], externalEnums: [] };

/**
 * The key the engine passes to `pg_advisory_lock` before migrating. The engine never unlocks it:
 * it relies on the connection closing, which does not happen for a PGlite session (or for the
 * single backend session behind pglite-socket), so we unlock it ourselves on close.
 */
const MIGRATE_ADVISORY_LOCK_KEY = 72707369;

declare global {
  // Read by the wasm-bindgen glue when the Rust code panics; the message ends up in the thrown error.
  var PRISMA_WASM_PANIC_REGISTRY: { message: string; set_message(message: string): void } | undefined;
}

let loading: Promise<typeof glue> | undefined;

/**
 * Instantiates the schema engine WebAssembly module once per process.
 *
 * The package entry (`import * as wasm from './schema_engine_bg.wasm'`) relies on ESM-wasm
 * integration, which Node 20 lacks, so we do what that entry does by hand. The glue's
 * `setTimeout` import is wrapped so the engine's timers are `unref()`ed: otherwise a finished
 * CLI script keeps running for up to 10 s until the engine's idle timers fire.
 */
export function loadSchemaEngineWasm(): Promise<typeof glue> {
  loading ??= (async () => {
    globalThis.PRISMA_WASM_PANIC_REGISTRY ??= {
      message: '',
      set_message(message: string) {
        this.message = `RuntimeError: ${message}`;
      },
    };
    // The package's export map hides the .wasm file; it sits next to the glue.
    const gluePath = createRequire(import.meta.url).resolve('@prisma/schema-engine-wasm/schema_engine_bg');
    const bytes = new Uint8Array(await readFile(path.join(path.dirname(gluePath), 'schema_engine_bg.wasm')));
    const module = await WebAssembly.compile(bytes);

    const imports: Record<string, unknown> = { ...glue };
    for (const name of Object.keys(imports)) {
      if (name.startsWith('__wbg_setTimeout_')) {
        imports[name] = (callback: () => void, ms: number) => {
          const timer = setTimeout(callback, ms >>> 0);
          timer.unref();
          return timer;
        };
      }
    }
    const instance = await WebAssembly.instantiate(module, {
      './schema_engine_bg.js': imports as WebAssembly.ModuleImports,
    });
    glue.__wbg_set_wasm(instance.exports);
    (instance.exports as { __wbindgen_start(): void }).__wbindgen_start();
    return glue;
  })();
  // A failed load (e.g. missing file) should not poison every later attempt.
  loading.catch(() => {
    loading = undefined;
  });
  return loading;
}

/** One line the engine logs (it logs JSON, tracing-style). */
export interface EngineLogLine {
  level: string;
  message: string;
  raw: string;
}

/** Options for {@link createSchemaEngine}. */
export interface CreateSchemaEngineOptions {
  /** Adapter factory for the main database, as given to PrismaClient. It is wrapped, not consumed. */
  adapterFactory: SqlMigrationAwareDriverAdapterFactory;
  /**
   * The Prisma schema the engine uses for connector settings (provider, `extensions`, preview
   * features). Required for `diff` targets that reference it; optional for `applyMigrations`.
   */
  datamodel?: { path: string; content: string };
  /** Receives the engine's log lines. */
  log?: (line: EngineLogLine) => void;
}

/** A running engine plus what is needed to release the connections it opened. */
export interface SchemaEngineHandle {
  engine: SchemaEngine;
  /**
   * Frees the engine and disposes every connection it opened (main and shadow). Never closes a
   * PGlite instance the caller passed in.
   */
  close(): Promise<void>;
}

/**
 * Creates a schema engine bound to a driver adapter factory.
 *
 * The factory is wrapped in a {@link MigrationAdapterFactory} so the engine gets the fixes it
 * needs and so every connection it opens can be released in `close()` (the engine's `free()`
 * cannot run async JS disposal itself).
 */
export async function createSchemaEngine(options: CreateSchemaEngineOptions): Promise<SchemaEngineHandle> {
  const { SchemaEngine } = await loadSchemaEngineWasm();
  const factory = new MigrationAdapterFactory(options.adapterFactory);
  const logFn = (raw: string) => {
    if (!options.log) return;
    let level = 'INFO';
    let message = raw;
    try {
      const parsed = JSON.parse(raw) as { level?: string; fields?: { message?: string } };
      level = parsed.level ?? level;
      message = parsed.fields?.message ?? raw;
    } catch {
      // Not JSON: pass it through as is.
    }
    options.log({ level, message, raw });
  };

  let engine: SchemaEngine;
  try {
    engine = await SchemaEngine.new(
      { datamodels: options.datamodel ? [[options.datamodel.path, options.datamodel.content]] : undefined },
      logFn,
      bindMigrationAwareSqlAdapterFactory(factory),
    );
  } catch (error) {
    await factory.disposeAll();
    throw error;
  }

  let closed = false;
  return {
    engine,
    async close() {
      if (closed) return;
      closed = true;
      try {
        engine.free();
      } finally {
        await factory.disposeAll();
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Adapter fixes
// ---------------------------------------------------------------------------------------------

// adapter-pg bundles its own @types/pg, which does not match the root one: derive the types from it.
type PgAdapter = Awaited<ReturnType<PrismaPg['connect']>>;
type PgPool = ReturnType<PgAdapter['underlyingDriver']>;
type PgPoolConfig = Exclude<ConstructorParameters<typeof PrismaPg>[0], string | PgPool>;

/** PostgreSQL's single-byte `"char"` type (pg_class.relkind, pg_constraint.contype, …). */
const CHAR_OID = 18;
const TEXT_OID = 25;

/**
 * Wraps the adapter factory the app uses so the schema engine can drive it:
 *
 * - pglite-prisma-adapter 0.7.2
 *   - `executeScript()` calls `client.exec()` without awaiting it: a failing migration is reported
 *     as applied and its error surfaces later as an unhandled rejection. We await it.
 *   - `connectToShadowDb()` creates a PGlite without the vector extension (so any migration with
 *     `CREATE EXTENSION vector` fails) and never closes it. We create one with vector and close it
 *     when the engine (or `disposeAll`) disposes the shadow connection.
 * - @prisma/adapter-pg 7.10.1
 *   - Introspection queries return columns of type `"char"` (OID 18), which the adapter rejects as
 *     an unsupported native type. We report them as `Character`, like pglite-prisma-adapter does
 *     (reporting them as Text makes the engine panic with `RuntimeError: unreachable`).
 *   - `executeScript()` splits the script on every `;`, which breaks string literals and
 *     dollar-quoted bodies, and runs the pieces one by one (not atomically). We send it whole.
 *   - The engine takes a session advisory lock and never unlocks it; with a shared or external
 *     pool that session would keep the lock. We always use a dedicated single-connection pool
 *     (single connection also keeps the lock, scripts and bookkeeping on one session) and end it.
 *   - `connectToShadowDb()` with a connection string connects to the *main* database (pg lets the
 *     connection string override `database`), never releases the connection that created the
 *     shadow database, and drops the database before ending the pool that is still connected to
 *     it. We build the shadow pool from a rewritten URL, end it first, then drop.
 */
export class MigrationAdapterFactory implements SqlMigrationAwareDriverAdapterFactory {
  readonly provider: 'postgres';
  readonly adapterName: string;
  private readonly open = new Set<SqlDriverAdapter>();
  private readonly pgConfig: PgPoolConfig | undefined;
  private readonly pglite: PGlite | undefined;

  constructor(private readonly inner: SqlMigrationAwareDriverAdapterFactory) {
    if (inner.provider !== 'postgres') {
      throw new Error(`Only PostgreSQL adapters are supported for migrations, got ${inner.provider}`);
    }
    this.provider = inner.provider;
    this.adapterName = inner.adapterName;
    if (inner instanceof PrismaPGlite) {
      // The adapter keeps its PGlite in a (TypeScript-)private field; we need it for exec() and to
      // know that shadow databases must be PGlite too.
      this.pglite = (inner as unknown as { client: PGlite }).client;
    } else if (inner instanceof PrismaPg) {
      this.pgConfig = (inner as unknown as { config: PgPoolConfig }).config;
    }
  }

  async connect(): Promise<SqlDriverAdapter> {
    if (this.pglite) return this.track(fixPGliteAdapter(await this.inner.connect(), this.pglite));
    if (this.pgConfig) return this.track(await connectPg(this.pgConfig));
    return this.track(await this.inner.connect());
  }

  async connectToShadowDb(): Promise<SqlDriverAdapter> {
    if (this.pglite) return this.track(await connectPGliteShadow());
    if (this.pgConfig) return this.track(await connectPgShadow(this.pgConfig));
    return this.track(await this.inner.connectToShadowDb());
  }

  /** Releases every connection still open (the engine does not always dispose them). */
  async disposeAll(): Promise<void> {
    const adapters = [...this.open];
    this.open.clear();
    const results = await Promise.allSettled(adapters.map((adapter) => adapter.dispose()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Makes `dispose()` idempotent, unlocks the migrate lock first and forgets disposed adapters. */
  private track(adapter: SqlDriverAdapter): SqlDriverAdapter {
    const dispose = adapter.dispose.bind(adapter);
    let disposed: Promise<void> | undefined;
    adapter.dispose = () => {
      disposed ??= (async () => {
        this.open.delete(adapter);
        try {
          await releaseMigrateLock(adapter);
        } finally {
          await dispose();
        }
      })();
      return disposed;
    };
    this.open.add(adapter);
    return adapter;
  }
}

/** Undoes every `pg_advisory_lock(72707369)` this session took (they stack). */
async function releaseMigrateLock(adapter: SqlDriverAdapter): Promise<void> {
  // Only the session that holds it can unlock, and unlocking a lock you do not hold just returns
  // false (with a warning), so a bounded loop is safe.
  for (let i = 0; i < 100; i++) {
    try {
      const result = await adapter.queryRaw({
        sql: `SELECT pg_advisory_unlock(${MIGRATE_ADVISORY_LOCK_KEY}) AS unlocked`,
        args: [],
        argTypes: [],
      });
      if (result.rows[0]?.[0] !== true) return;
    } catch {
      return; // Connection already gone: nothing is held any more.
    }
  }
}

/** Same shape as the pglite/pg error objects we convert. */
interface PgErrorLike {
  code?: string;
  severity?: string;
  message: string;
  detail?: string;
  column?: string;
  hint?: string;
}

function toDriverAdapterError(error: unknown): unknown {
  const e = error as PgErrorLike;
  if (!e || typeof e.code !== 'string' || typeof e.message !== 'string') return error;
  return new DriverAdapterError({
    kind: 'postgres',
    code: e.code,
    severity: e.severity ?? 'ERROR',
    message: e.message,
    detail: e.detail,
    column: e.column,
    hint: e.hint,
  });
}

function fixPGliteAdapter(adapter: SqlDriverAdapter, db: PGlite): SqlDriverAdapter {
  adapter.executeScript = async (script: string) => {
    try {
      // exec() uses the simple query protocol: a multi-statement script runs as one implicit
      // transaction, as with the native engine.
      await db.exec(script);
    } catch (error) {
      throw toDriverAdapterError(error);
    }
  };
  return adapter;
}

async function connectPGliteShadow(): Promise<SqlDriverAdapter> {
  const shadow = await PGlite.create({ extensions: PGLITE_EXTENSIONS });
  try {
    const adapter = fixPGliteAdapter(await new PrismaPGlite(shadow).connect(), shadow);
    const dispose = adapter.dispose.bind(adapter);
    adapter.dispose = async () => {
      try {
        await dispose();
      } finally {
        await shadow.close();
      }
    };
    return adapter;
  } catch (error) {
    await shadow.close();
    throw error;
  }
}

/**
 * Result rows → indexes of their `"char"` columns. pg result rows travel unchanged through
 * adapter-pg's queryRaw, so the array identity links the pg-level result to the adapter's result.
 */
const charColumns = new WeakMap<unknown[], number[]>();

/** Connects through adapter-pg on a dedicated one-connection pool, with the fixes above. */
async function connectPg(config: PgPoolConfig): Promise<SqlDriverAdapter> {
  const adapter = await new PrismaPg({ ...config, max: 1 }).connect();
  const pool = adapter.underlyingDriver();
  // Patch each client as it connects (pool.query goes through client.query too).
  pool.on('connect', (client) => hideCharColumns(client));
  const queryRaw = adapter.queryRaw.bind(adapter);
  adapter.queryRaw = async (query) => {
    const result = await queryRaw(query);
    // The engine reads "char" values as Rust chars (as pglite-prisma-adapter reports them);
    // reporting them as Text makes it panic.
    for (const index of charColumns.get(result.rows) ?? []) result.columnTypes[index] = ColumnTypeEnum.Character;
    return result;
  };
  // executeScript in adapter-pg splits the script on every ';' (breaking string literals and
  // dollar-quoted bodies) and runs the pieces separately. Send it whole instead: a
  // multi-statement simple query is atomic, like the native engine's.
  adapter.executeScript = async (script: string) => {
    try {
      await pool.query(script);
    } catch (error) {
      throw toDriverAdapterError(error);
    }
  };
  return adapter;
}

/** The parts of a pg query result we touch. */
interface PgResultLike {
  fields?: { dataTypeID: number }[];
  rows: unknown[];
}

/**
 * Makes adapter-pg accept `"char"` columns: it throws "Unsupported column type char" for OID 18,
 * so we relabel those fields as text and remember where they were (see `charColumns`).
 */
function hideCharColumns(client: { query: unknown }): void {
  const query = client.query as (...args: unknown[]) => unknown;
  const fix = (result: unknown) => {
    for (const r of (Array.isArray(result) ? result : [result]) as (PgResultLike | undefined)[]) {
      if (!r?.fields) continue;
      const indexes: number[] = [];
      r.fields.forEach((field, index) => {
        if (field.dataTypeID === CHAR_OID) {
          field.dataTypeID = TEXT_OID;
          indexes.push(index);
        }
      });
      if (indexes.length > 0) charColumns.set(r.rows, indexes);
    }
    return result;
  };
  client.query = function (this: unknown, ...args: unknown[]) {
    // pool.query() calls client.query with a callback; the adapter's transactions use promises.
    const callback = args.at(-1);
    if (typeof callback === 'function') {
      args[args.length - 1] = (error: unknown, result: unknown) => callback(error, error ? result : fix(result));
    }
    const result = query.apply(this, args);
    return result instanceof Promise ? result.then(fix) : result;
  };
}

async function connectPgShadow(config: PgPoolConfig): Promise<SqlDriverAdapter> {
  const admin = await connectPg(config);
  const database = `prisma_migrate_shadow_db_${globalThis.crypto.randomUUID().replaceAll('-', '')}`;
  try {
    await admin.executeScript(`CREATE DATABASE "${database}"`);
  } catch (error) {
    await admin.dispose();
    throw error;
  }
  const shadowConfig: PgPoolConfig = { ...config, database };
  if (config.connectionString) {
    const url = new URL(config.connectionString);
    url.pathname = `/${encodeURIComponent(database)}`;
    shadowConfig.connectionString = url.toString();
  }
  const shadow = await connectPg(shadowConfig);
  // Servers that ignore the database name (pglite-socket serves one database whatever you ask
  // for) would hand the engine the main database as shadow, to replay migrations into. Refuse.
  const current = await shadow
    .queryRaw({ sql: 'SELECT current_database()', args: [], argTypes: [] })
    .then((r) => r.rows[0]?.[0])
    .catch(() => undefined);
  if (current !== database) {
    await shadow.dispose().catch(() => undefined);
    await admin.executeScript(`DROP DATABASE IF EXISTS "${database}"`).catch(() => undefined);
    await admin.dispose();
    throw new Error(
      `Shadow database "${database}" was created but the server connected us to "${String(current)}"; ` +
        'it cannot host a shadow database (use an in-memory PGlite shadow instead).',
    );
  }
  const dispose = shadow.dispose.bind(shadow);
  shadow.dispose = async () => {
    try {
      await dispose(); // Ends the shadow pool, so nothing is connected to the database any more.
      await admin.executeScript(`DROP DATABASE IF EXISTS "${database}"`);
    } finally {
      await admin.dispose();
    }
  };
  return shadow;
}
