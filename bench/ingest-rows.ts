/**
 * What writing one chunk row costs inside embedded PGlite (WebAssembly, one thread), and which part
 * of it is what: the evidence behind how indexing writes chunks (src/domain/search/indexing.ts,
 * chunkInsert). A bare PGlite with pgvector and pg_textsearch, reached as the gateway reaches it
 * (node-postgres over the wire protocol, pglite-socket with the gateway's session queue), a table
 * shaped like `chunks` with its BM25 index, hash-1024 vectors of corpus-like paragraphs (~64
 * tokens), inserted 16 rows a statement as indexing does, outside any HNSW index (the fresh tier).
 * The vectors go as pgvector text (dense, or sparse: a quarter of the characters) or, as indexing
 * sends them now, as one binary `vector[]` parameter (src/db/vector-binary.ts).
 *
 *   npx tsx bench/ingest-rows.ts [--rows 4000] [--rounds 3]
 *
 * Each variant runs `rounds` times, interleaved with the others, each time on a new database; the
 * table gives the median rows/s and its ratio to dense text (how indexing sent vectors before).
 * Writes the `## Chunk rows (embedded)` section of BENCHMARKS.md. Not part of the test suite.
 */
import { performance } from 'node:perf_hooks';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { PGLITE_EXTENSIONS } from '../src/db/pglite-extensions.js';
import { servePglite } from '../src/db/session-queue.js';
import { vectorArrayParam } from '../src/db/vector-binary.js';
import { HashingEmbedder } from '../src/indexing/embedders/hashing.js';
import { paragraph } from './lib-corpus.js';
import { arg } from './lib-procs.js';
import { machine, writeSection } from './report.js';

const ROWS = Number(arg('rows', '4000'));
const ROUNDS = Number(arg('rounds', '3'));
const embedder = new HashingEmbedder(1024);
const texts = Array.from({ length: ROWS }, () => paragraph(3));
const vectors = texts.map((t) => embedder.embedOne(t));
type Encoded = { dense: string | null; sparse: string | null } | { binary: number[] };
const dense = (v: number[]): Encoded => ({ dense: `[${v.join(',')}]`, sparse: null });
/** pgvector's sparse text of the same vector (`{i:x,…}/dims`), cast back to `vector` in SQL. */
const sparse = (v: number[]): Encoded => ({
  dense: null,
  sparse: `{${v.flatMap((x, i) => (x !== 0 ? [`${i + 1}:${x}`] : [])).join(',')}}/${v.length}`,
});
const binary = (v: number[]): Encoded => ({ binary: v });

interface Variant {
  name: string;
  encode: (v: number[]) => Encoded;
}
const VARIANTS: Variant[] = [
  { name: 'dense vector text (before)', encode: dense },
  { name: 'sparse vector text', encode: sparse },
  { name: 'binary `vector[]` parameter (now)', encode: binary },
];

async function once(o: Variant): Promise<number> {
  const db = await PGlite.create({ extensions: PGLITE_EXTENSIONS });
  await db.exec(`CREATE EXTENSION vector; CREATE EXTENSION pg_textsearch;
    CREATE TABLE c (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), entry_id text UNIQUE, volume_id text, content text,
                    embedding vector, tsv tsvector, dims int, fresh bool);
    CREATE INDEX ON c (volume_id);
    CREATE INDEX c_bm25 ON c USING bm25 (content) WITH (text_config = 'english');`);
  const server = await servePglite(db, { host: '127.0.0.1', port: 0 }, 2);
  const client = new pg.Client({
    host: '127.0.0.1',
    port: Number(server.getServerConn().split(':').pop()),
    user: 'postgres',
    database: 'postgres',
  });
  await client.connect();
  const oid = (await client.query<{ oid: number }>(`SELECT 'vector'::regtype::oid::int AS oid`)).rows[0]?.oid as number;
  const t0 = performance.now();
  for (let i = 0; i < ROWS; i += 16) {
    const vs = vectors.slice(i, i + 16).map(o.encode);
    const ids = texts.slice(i, i + 16).map((_, j) => `e${i + j}`);
    const contents = texts.slice(i, i + 16);
    if (vs.every((v) => 'binary' in v))
      await client.query(
        `INSERT INTO c (entry_id, volume_id, content, embedding, tsv, dims, fresh)
         SELECT t.e, 'v', t.c, t.v, NULL, 1024, true FROM unnest($1::text[], $2::text[], $3::vector[]) AS t(e, c, v)`,
        [
          ids,
          contents,
          vectorArrayParam(
            vs.map((v) => ('binary' in v ? v.binary : [])),
            oid,
          ),
        ],
      );
    else
      await client.query(
        `INSERT INTO c (entry_id, volume_id, content, embedding, tsv, dims, fresh)
         SELECT t.e, 'v', t.c, coalesce(t.v::vector, t.s::sparsevec::vector), NULL, 1024, true
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(e, c, v, s)`,
        [ids, contents, vs.map((v) => ('dense' in v ? v.dense : null)), vs.map((v) => ('sparse' in v ? v.sparse : null))],
      );
  }
  const rate = ROWS / ((performance.now() - t0) / 1000);
  await client.end();
  await server.stop();
  await db.close();
  return rate;
}

const rates = new Map<Variant, number[]>(VARIANTS.map((v) => [v, []]));
for (let r = 0; r < ROUNDS; r++) {
  for (const v of VARIANTS) {
    const rate = await once(v);
    rates.get(v)?.push(rate);
    process.stdout.write(`round ${r + 1}: ${v.name}: ${rate.toFixed(0)} rows/s\n`);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const base = median(rates.get(VARIANTS[0] as Variant) as number[]);
const nnz = vectors.reduce((n, v) => n + v.filter((x) => x !== 0).length, 0) / ROWS;
const lines = [
  `Bare embedded PGlite + pgvector + pg_textsearch (BM25 index on content), over the wire protocol (node-postgres, pglite-socket) as the gateway reaches it, ${new Date().toISOString().slice(0, 10)}. Machine: ${machine()}.`,
  `Run: \`npx tsx bench/ingest-rows.ts --rows ${ROWS} --rounds ${ROUNDS}\`. ${ROWS.toLocaleString('en')} chunk rows of hash-1024 vectors (${nnz.toFixed(0)} non-zero of 1,024 on average), 16 a statement, outside any HNSW index; medians of ${ROUNDS} interleaved rounds, each on a new database.`,
  '',
  '| Chunk row | rows/s | vs before |',
  '|---|---:|---:|',
  ...VARIANTS.map((v) => {
    const m = median(rates.get(v) as number[]);
    return `| ${v.name} | ${m.toFixed(0)} | ${(m / base).toFixed(2)}× |`;
  }),
];
process.stdout.write(`${lines.join('\n')}\n`);
await writeSection('Chunk rows (embedded)', lines.join('\n'));
