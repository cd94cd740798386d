import type { Runtime } from '../shared/runtime.js';

// Vacuuming where Postgres does not: embedded PGlite runs no autovacuum, so without the gateway dead
// row versions stay (BM25 counts them in its corpus statistics, HNSW graphs keep their deleted
// nodes) and planner statistics never exist. On a Postgres server, autovacuum does this and the
// gateway leaves it alone.
//
// The rules are autovacuum's own (a table is vacuumed once its dead rows pass 50 + 20% of its live
// ones, analysed once its changes pass 50 + 10%), read from the same statistics, with one addition
// for `chunks`. Its HNSW indexes make a VACUUM costly where rows were deleted: pgvector repairs
// every graph node that pointed at a deleted one, and PGlite runs it on its one thread, so every
// request waits. Measured (bench/vacuum.ts, BENCHMARKS.md "Vacuum (embedded)"): seconds for a few
// hundred deleted chunks. So `chunks` is vacuumed early, at 50 + 2%, only while the gateway is quiet
// (no HTTP request in flight or finished within VACUUM_QUIET_MS), and otherwise at autovacuum's 20%.

/** Autovacuum's thresholds (autovacuum_vacuum_threshold, _scale_factor; autovacuum_analyze_scale_factor). */
const BASE = 50;
const VACUUM_SHARE = 0.2;
const ANALYZE_SHARE = 0.1;
/** Dead share at which a quiet gateway vacuums a table with HNSW indexes, before the busy threshold. */
const QUIET_VACUUM_SHARE = 0.02;
/** Tables whose VACUUM repairs HNSW graphs (the expensive kind, left for a quiet gateway). */
const HNSW_TABLES = new Set(['chunks']);

export interface TableActivity {
  table: string;
  live: number;
  dead: number;
  /** Rows inserted, updated or deleted since the table was last analysed. */
  modified: number;
}

/** What a table needs now: a VACUUM (with ANALYZE), an ANALYZE alone, or nothing. */
export function vacuumDue(t: TableActivity, quiet: boolean): 'vacuum' | 'analyze' | null {
  const share = HNSW_TABLES.has(t.table) && quiet ? QUIET_VACUUM_SHARE : VACUUM_SHARE;
  if (t.dead > BASE + share * t.live) return 'vacuum';
  if (t.modified > BASE + ANALYZE_SHARE * t.live) return 'analyze';
  return null;
}

/**
 * The gateway's tables as Postgres' cumulative statistics count them. A backend publishes its counts
 * at most once a second when idle, so they are flushed first (PGlite's one backend is never idle
 * long enough). They start again from zero when the database restarts.
 */
export async function tableActivity(rt: Runtime): Promise<TableActivity[]> {
  await rt.db.$executeRaw`SELECT pg_stat_force_next_flush()`;
  return rt.db.$queryRaw<TableActivity[]>`
    SELECT relname AS "table", n_live_tup::float8 AS live, n_dead_tup::float8 AS dead, n_mod_since_analyze::float8 AS modified
    FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname <> '_prisma_migrations' ORDER BY relname`;
}

/** Whether no HTTP request is in flight and none ended within `quietMs`. */
export function isQuiet(rt: Runtime): boolean {
  const { inFlight, lastEndedAt } = rt.state.requests;
  return inFlight === 0 && Date.now() - lastEndedAt >= rt.settings.vacuum.quietMs;
}

export interface VacuumRun {
  table: string;
  action: 'vacuum' | 'analyze';
  dead: number;
  live: number;
  seconds: number;
}

/**
 * Vacuums (or analyses) each table whose statistics say it is due (`vacuumDue`), one at a time, and
 * logs each with its counts and time. Does nothing where Postgres runs autovacuum (server mode).
 * `quiet`: whether the gateway is idle now (isQuiet); it lets `chunks` be vacuumed early.
 */
export async function vacuumWhereDue(rt: Runtime, quiet = isQuiet(rt)): Promise<VacuumRun[]> {
  if (!rt.settings.vacuum.byGateway) return [];
  const runs: VacuumRun[] = [];
  for (const t of await tableActivity(rt)) {
    const action = vacuumDue(t, quiet);
    if (!action) continue;
    const started = performance.now();
    // The name comes from pg_stat_user_tables, quoted as an identifier.
    const name = `"${t.table.replaceAll('"', '""')}"`;
    await rt.db.$executeRawUnsafe(action === 'vacuum' ? `VACUUM (ANALYZE) ${name}` : `ANALYZE ${name}`);
    const run = { table: t.table, action, dead: t.dead, live: t.live, seconds: (performance.now() - started) / 1000 };
    rt.log.info({ ...run, quiet }, `${action === 'vacuum' ? 'vacuumed' : 'analysed'} ${t.table}`);
    runs.push(run);
  }
  return runs;
}

/**
 * Vacuums and analyses every table at once (where the gateway vacuums): at start-up, because the
 * statistics `vacuumWhereDue` reads do not survive a restart of the embedded database.
 */
export async function vacuumAll(rt: Runtime): Promise<void> {
  if (!rt.settings.vacuum.byGateway) return;
  const started = performance.now();
  await rt.db.$executeRawUnsafe('VACUUM (ANALYZE)');
  rt.log.info({ seconds: (performance.now() - started) / 1000 }, 'vacuumed every table (start-up)');
}
