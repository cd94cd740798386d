/**
 * Text with the shape of real notes for the search benchmarks: the labelled corpus
 * (test/fixtures/search-corpus.json) and paragraphs of its sentences drawn by a seeded generator, so
 * every run writes the same texts.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Db } from '../src/db/client.js';
import { vectorArrayParam, vectorOid } from '../src/db/vector-binary.js';
import { textHash } from '../src/domain/search/indexing.js';
import { Prisma } from '../src/generated/prisma/client.js';
import type { HashingEmbedder } from '../src/indexing/embedders/hashing.js';

export const corpus = JSON.parse(await fs.readFile(path.resolve(import.meta.dirname, '../test/fixtures/search-corpus.json'), 'utf8')) as {
  documents: { text: string }[];
  queries: { query: string }[];
};
export const sentences = corpus.documents.flatMap((d) => d.text.split(/(?<=\.)\s+/));
let seed = 42;
const rand = () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed / 2 ** 31;
};
export const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)] as T;
/** `n` sentences of the corpus, drawn at random (a 64-token chunk is about 3). */
export const paragraph = (n: number) => Array.from({ length: n }, () => pick(sentences)).join(' ');

/**
 * Writes `count` one-chunk text entries (`/bulk/<from + i>.md`, 3 sentences each) straight into a
 * volume's rows: the entry and chunk rows the indexing pipeline writes, merged (in the HNSW index),
 * built in bulk so 100k chunks take minutes, not hours. At most a few hundred at a time.
 */
export async function fillChunks(
  prisma: Db,
  o: {
    volumeId: string;
    model: string;
    embedder: HashingEmbedder;
    from: number;
    count: number;
    /** Also write each chunk's BM25 vector against this typical length (databases ranking with them). */
    bm25Avgdl?: number;
  },
): Promise<void> {
  const entries = Array.from({ length: o.count }, (_, i) => ({ id: randomUUID(), path: `/bulk/${o.from + i}.md`, text: paragraph(3) }));
  const chunking = await prisma.volume.findUniqueOrThrow({
    where: { id: o.volumeId },
    select: { chunkingStrategy: true, chunkSize: true, chunkOverlap: true },
  });
  await prisma.entry.createMany({
    data: entries.map((e) => ({
      id: e.id,
      volumeId: o.volumeId,
      path: e.path,
      contentType: 'text',
      contentText: e.text,
      sizeBytes: BigInt(e.text.length),
      isIndexed: true,
      totalChunks: 1,
      // The content hash indexing records (chunks exist only with one): a reindex finds the entry as indexing left it.
      contentHash: textHash(e.text, chunking),
    })),
  });
  // In binary, as indexing sends them (src/db/vector-binary.ts).
  const vectors = vectorArrayParam(
    entries.map((e) => o.embedder.embedOne(e.text)),
    await vectorOid(prisma),
  );
  const bm25 = o.bm25Avgdl === undefined ? Prisma.sql`NULL` : Prisma.sql`chunk_bm25_vector(d.tsv, ${o.bm25Avgdl}::float8)`;
  // Each chunk's hash as indexing computes it (sha256 of its text), so a reindex into the same model keeps the row.
  await prisma.$executeRaw`
    INSERT INTO chunks (id, entry_id, volume_id, chunk_index, content, content_hash, embedder_id, dims, embedding, tsv, bm25, created_at)
    SELECT gen_random_uuid()::text, t.entry, ${o.volumeId}, 0, t.content, encode(sha256(convert_to(t.content, 'UTF8')), 'hex'), ${o.model}, ${o.embedder.dims}, t.vec,
           d.tsv, ${bm25}, now()
    FROM unnest(${entries.map((e) => e.id)}::text[], ${entries.map((e) => e.text)}::text[], ${vectors}::vector[]) AS t(entry, content, vec)
    CROSS JOIN LATERAL (SELECT to_tsvector('english', t.content) AS tsv OFFSET 0) d`;
}
