/**
 * What writing one chunk row costs inside embedded PGlite (WebAssembly, one thread), and which part
 * of it is what: the evidence behind how indexing writes chunks (src/domain/search/indexing.ts,
 * chunkInsert). Not the gateway: a bare PGlite with pgvector and pg_textsearch, a table shaped like
 * `chunks` with its BM25 index, hash-1024 vectors of corpus-like paragraphs (~64 tokens), inserted
 * 16 rows a statement as indexing does, outside any HNSW index (the fresh tier). Also measures sending
 * the mostly-zero hashing vectors as pgvector's sparse text (a quarter of the characters), which
 * indexing does not do: it bought nothing measurable.
 *
 *   npx tsx bench/ingest-rows.ts [--rows 4000] [--rounds 3]
 *
 * Each variant runs `rounds` times, interleaved with the others, each time on a new database; the
 * table gives the median rows/s and its ratio to the old way (GIN + tsvector, dense vector text).
 * Writes the `## Chunk rows (embedded)` section of BENCHMARKS.md. Not part of the test suite.
 */
import { performance } from 'node:perf_hooks';
import { PGlite } from '@electric-sql/pglite';
import { PGLITE_EXTENSIONS } from '../src/db/pglite-extensions.js';
import { HashingEmbedder } from '../src/indexing/embedders/hashing.js';
import { paragraph } from './lib-corpus.js';
import { arg } from './lib-procs.js';
import { machine, writeSection } from './report.js';

const ROWS = Number(arg('rows', '4000'));
const ROUNDS = Number(arg('rounds', '3'));
const embedder = new HashingEmbedder(1024);
const texts = Array.from({ length: ROWS }, () => paragraph(3));
const vectors = texts.map((t) => embedder.embedOne(t));
const dense = (v: number[]) => ({ dense: `[${v.join(',')}]`, sparse: null });
/** pgvector's sparse text of the same vector (`{i:x,…}/dims`), cast back to `vector` in SQL. */
const sparse = (v: number[]) => ({
  dense: null,
  sparse: `{${v.flatMap((x, i) => (x !== 0 ? [`${i + 1}:${x}`] : [])).join(',')}}/${v.length}`,
});

interface Variant {
  name: string;
  gin: boolean;
  tsv: boolean;
  text: (v: number[]) => { dense: string | null; sparse: string | null };
}
const VARIANTS: Variant[] = [
  { name: 'GIN + tsvector, dense vector text (before)', gin: true, tsv: true, text: dense },
  { name: 'GIN + tsvector, sparse vector text', gin: true, tsv: true, text: sparse },
  { name: 'no GIN or tsvector, dense vector text (now, BM25 databases)', gin: false, tsv: false, text: dense },
  { name: 'no GIN or tsvector, sparse vector text', gin: false, tsv: false, text: sparse },
];

async function once(o: Variant): Promise<number> {
  const db = await PGlite.create({ extensions: PGLITE_EXTENSIONS });
  await db.exec(`CREATE EXTENSION vector; CREATE EXTENSION pg_textsearch;
    CREATE TABLE c (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), entry_id text UNIQUE, volume_id text, content text,
                    embedding vector, tsv tsvector, dims int, fresh bool);
    CREATE INDEX ON c (volume_id);
    CREATE INDEX c_bm25 ON c USING bm25 (content) WITH (text_config = 'english');
    ${o.gin ? 'CREATE INDEX ON c USING gin (tsv);' : ''}`);
  const t0 = performance.now();
  for (let i = 0; i < ROWS; i += 16) {
    const vs = vectors.slice(i, i + 16).map(o.text);
    await db.query(
      `INSERT INTO c (entry_id, volume_id, content, embedding, tsv, dims, fresh)
       SELECT t.e, 'v', t.c, coalesce(t.v::vector, t.s::sparsevec::vector), ${o.tsv ? "to_tsvector('english', t.c)" : 'NULL'}, 1024, true
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(e, c, v, s)`,
      [texts.slice(i, i + 16).map((_, j) => `e${i + j}`), texts.slice(i, i + 16), vs.map((v) => v.dense), vs.map((v) => v.sparse)],
    );
  }
  const rate = ROWS / ((performance.now() - t0) / 1000);
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
  `Bare embedded PGlite + pgvector + pg_textsearch (BM25 index on content), ${new Date().toISOString().slice(0, 10)}. Machine: ${machine()}.`,
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
