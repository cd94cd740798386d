/**
 * What pgvector's HNSW costs inside embedded PGlite (WebAssembly, one thread) for the default
 * embedder's vectors, and what the alternatives would buy: the evidence behind #14's next steps
 * (search latency, merging the fresh tier, bulk imports). Not the gateway: a bare PGlite with
 * pgvector, one table, the hashing embedder (hash-1024, and hash-384 to see what fewer dimensions
 * buy) over corpus-like paragraphs (~64 tokens).
 *
 *   npx tsx bench/hnsw-options.ts [--rows 10000] [--queries 100] [--dims 1024,384]
 *
 * For each option: building the index over `rows` rows (the bulk path: load, then index), inserting
 * 1,000 more rows into a built index 50 at a time (the row-by-row path the fresh-tier merge takes),
 * and 100 nearest-neighbour queries at ef_search 100 and 200 (iterative scans): p50/p95 and recall@10
 * against an exact scan. Options: the migration's index (vector, m 16, ef_construction 64), the same
 * vectors as `sparsevec`, two cheaper builds (m 16 / ef_construction 32, m 12 / 40), and binary
 * quantization (an HNSW index over bit codes, Hamming or Jaccard, its best re-ranked by exact cosine).
 * Writes the `## HNSW options (embedded)` section of BENCHMARKS.md. Not part of the test suite.
 */
import { performance } from 'node:perf_hooks';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { HashingEmbedder } from '../src/indexing/embedders/hashing.js';
import { corpus, paragraph } from './lib-corpus.js';
import { arg } from './lib-procs.js';
import { machine, writeSection } from './report.js';

const ROWS = Number(arg('rows', '10000'));
const QUERIES = Number(arg('queries', '100'));
const MORE = 1000;
const DIMS = arg('dims', '1024,384').split(',').map(Number);

interface Option {
  name: string;
  /** The column the index and its queries read: the vector, its sparse form, or a bit code of it. */
  column: 'v' | 's' | 'b' | 't';
  index: string;
  /** The distance operator the index orders by (cosine unless said). */
  op?: string;
  /** Quantized codes: the index's top `rerank × 10` re-ranked by exact cosine distance. */
  rerank?: number;
}
const OPTIONS: Option[] = [
  { name: 'vector, m 16, ef_construction 64 (the migration)', column: 'v', index: 'v vector_cosine_ops' },
  { name: 'sparsevec, m 16, ef_construction 64', column: 's', index: 's sparsevec_cosine_ops' },
  { name: 'vector, m 16, ef_construction 32', column: 'v', index: 'v vector_cosine_ops) WITH (m = 16, ef_construction = 32' },
  { name: 'vector, m 12, ef_construction 40', column: 'v', index: 'v vector_cosine_ops) WITH (m = 12, ef_construction = 40' },
  { name: 'bit (signs), Hamming, top 40 re-ranked', column: 'b', index: 'b bit_hamming_ops', op: '<~>', rerank: 4 },
  { name: 'bit (signs), Hamming, top 100 re-ranked', column: 'b', index: 'b bit_hamming_ops', op: '<~>', rerank: 10 },
  { name: 'bit ×2 (positive, negative), Jaccard, top 40 re-ranked', column: 't', index: 't bit_jaccard_ops', op: '<%>', rerank: 4 },
  { name: 'bit ×2 (positive, negative), Jaccard, top 100 re-ranked', column: 't', index: 't bit_jaccard_ops', op: '<%>', rerank: 10 },
];

const lines: string[] = [];
const out = (line: string) => {
  process.stdout.write(`${line}\n`);
  lines.push(line);
};
for (const dims of DIMS) {
  const embedder = new HashingEmbedder(dims);
  const dense = (v: number[]) => `[${v.join(',')}]`;
  /** Which coordinates are positive, then which are negative: a set code for Jaccard. */
  const ternary = (v: number[]) => v.map((x) => (x > 0 ? '1' : '0')).join('') + v.map((x) => (x < 0 ? '1' : '0')).join('');
  const sparse = (v: number[]) => `{${v.flatMap((x, i) => (x !== 0 ? [`${i + 1}:${x}`] : [])).join(',')}}/${dims}`;
  const vectors = (n: number) => Array.from({ length: n }, () => embedder.embedOne(paragraph(3)));

  const base = vectors(ROWS);
  const extra = vectors(MORE);
  const queries = corpus.queries.slice(0, QUERIES).map((q) => embedder.embedOne(q.query));
  const nnz = base.reduce((n, v) => n + v.filter((x) => x !== 0).length, 0) / ROWS;

  const db = await PGlite.create({ extensions: { vector } });
  await db.exec(`CREATE EXTENSION vector; SET maintenance_work_mem = '512MB';
    CREATE TABLE t (id int PRIMARY KEY, v vector(${dims}), s sparsevec(${dims}), b bit(${dims}), t bit(${2 * dims}));`);
  const insert = async (vs: number[][], from: number) => {
    for (let i = 0; i < vs.length; i += 50) {
      const b = vs.slice(i, i + 50);
      await db.query(
        'INSERT INTO t SELECT id, v::vector, s::sparsevec, binary_quantize(v::vector)::bit(' +
          dims +
          '), t::bit(' +
          2 * dims +
          ') FROM unnest($1::int[], $2::text[], $3::text[], $4::text[]) AS r(id, v, s, t)',
        [b.map((_, j) => from + i + j), b.map(dense), b.map(sparse), b.map(ternary)],
      );
    }
  };
  // Exact top 10 per query over every row an option ends with (built rows and inserted ones), once:
  // every option is judged against the same answers.
  await insert(base, 0);
  await insert(extra, ROWS);
  const exact: Set<number>[] = [];
  for (const q of queries) {
    const r = await db.query<{ id: number }>('SELECT id FROM t ORDER BY v <=> $1 LIMIT 10', [dense(q)]);
    exact.push(new Set(r.rows.map((x) => x.id)));
  }

  const pgVersion = (await db.query<{ v: string }>('SELECT version() AS v')).rows[0]?.v.split(' ')[1];
  if (dims === DIMS[0]) {
    out(
      `Bare embedded PGlite (PostgreSQL ${pgVersion}) + pgvector, WebAssembly on one thread, ${new Date().toISOString().slice(0, 10)}. Machine: ${machine()}.`,
    );
    out(`Run: \`npx tsx bench/hnsw-options.ts --rows ${ROWS} --dims ${DIMS.join(',')}\`.`);
  }
  out('');
  out(
    `**hash-${dims}**: ${ROWS.toLocaleString('en')} rows of hash-${dims} vectors (${nnz.toFixed(0)} non-zero of ${dims.toLocaleString('en')} on average), ${QUERIES} queries (iterative scans, relaxed order); recall@10 against an exact scan.`,
  );
  out('');
  out(
    '| Index | Build (bulk), rows/s | Insert into a built index, rows/s | ef 100 p50 / p95 | ef 100 recall@10 | ef 200 p50 / p95 | ef 200 recall@10 |',
  );
  out('|---|---:|---:|---:|---:|---:|---:|');
  for (const o of OPTIONS) {
    await db.exec(`DROP INDEX IF EXISTS t_hnsw; DELETE FROM t WHERE id >= ${ROWS}`);
    let t0 = performance.now();
    await db.exec(`CREATE INDEX t_hnsw ON t USING hnsw (${o.index})`);
    const build = ROWS / ((performance.now() - t0) / 1000);
    t0 = performance.now();
    await insert(extra, ROWS);
    const inserts = MORE / ((performance.now() - t0) / 1000);
    const cells: string[] = [];
    for (const ef of [100, 200]) {
      await db.exec(`SET enable_seqscan = off; SET hnsw.ef_search = ${ef}; SET hnsw.iterative_scan = relaxed_order`);
      const times: number[] = [];
      let hits = 0;
      for (const [i, q] of queries.entries()) {
        const s = performance.now();
        const op = o.op ?? '<=>';
        const r = o.rerank
          ? await db.query<{ id: number }>(
              `SELECT id FROM (SELECT id, v FROM t ORDER BY ${o.column} ${op} ${o.column === 'b' ? `binary_quantize($1::vector)::bit(${dims})` : `$2::bit(${2 * dims})`} LIMIT ${o.rerank * 10}) c ORDER BY v <=> $1 LIMIT 10`,
              [dense(q), ...(o.column === 't' ? [ternary(q)] : [])],
            )
          : await db.query<{ id: number }>(`SELECT id FROM t ORDER BY ${o.column} ${op} $1 LIMIT 10`, [
              o.column === 'v' ? dense(q) : sparse(q),
            ]);
        times.push(performance.now() - s);
        hits += r.rows.filter((x) => exact[i]?.has(x.id)).length;
      }
      await db.exec('RESET enable_seqscan');
      times.sort((a, b) => a - b);
      const at = (p: number) => (times[Math.min(times.length - 1, Math.floor(times.length * p))] as number).toFixed(2);
      cells.push(`${at(0.5)} / ${at(0.95)} ms`, (hits / (queries.length * 10)).toFixed(3));
    }
    out(`| ${o.name} | ${build.toFixed(0)} | ${inserts.toFixed(0)} | ${cells.join(' | ')} |`);
  }
  await db.close();
}
out('');
out(
  `Each index is built over the first ${ROWS.toLocaleString('en')} rows, then takes the other ${MORE.toLocaleString('en')} one insert of 50 at a time; the queries run over all of them, against exact answers over all of them. The bit rows index a binary code of each vector (pgvector's \`binary_quantize\`: the signs; or which coordinates are positive, then which are negative) and re-rank the index's best by exact cosine distance.`,
);
await writeSection('HNSW options (embedded)', lines.join('\n'));
