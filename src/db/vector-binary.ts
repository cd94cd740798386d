import type { Db } from './client.js';

// Vectors sent to Postgres in binary. As text, pgvector parses every coordinate with strtof: for a
// 1024-dimension vector that cost ~340 µs of the embedded database's one thread per chunk row, a third
// of indexing a chunk (measured on PGlite, 2026-12-01). node-postgres sends a Buffer parameter in
// binary format, so a `$n::vector[]` parameter built here reaches pgvector's binary receive function
// (vector_recv), which copies the floats.

/**
 * Many vectors as one `vector[]` parameter: Postgres' binary array format (one dimension, no nulls,
 * the element type's oid), each element in pgvector's binary form (int16 dimensions, int16 unused,
 * then float4 coordinates, all big-endian). Coordinates are rounded to float4, as pgvector stores them.
 */
export function vectorArrayParam(vectors: readonly (readonly number[])[], vectorOid: number): Buffer {
  const size = 20 + vectors.reduce((n, v) => n + 4 + 4 + 4 * v.length, 0);
  const buf = Buffer.allocUnsafe(size);
  let at = buf.writeInt32BE(1, 0); // dimensions of the array
  at = buf.writeInt32BE(0, at); // no nulls
  at = buf.writeUInt32BE(vectorOid, at);
  at = buf.writeInt32BE(vectors.length, at);
  at = buf.writeInt32BE(1, at); // lower bound
  for (const v of vectors) {
    at = buf.writeInt32BE(4 + 4 * v.length, at);
    at = buf.writeInt16BE(v.length, at);
    at = buf.writeInt16BE(0, at);
    for (const x of v) at = buf.writeFloatBE(x, at);
  }
  return buf;
}

const oids = new WeakMap<Db, Promise<number>>();

/** The oid of pgvector's `vector` type in this database (it comes with the extension), read once per client. */
export function vectorOid(db: Db): Promise<number> {
  let oid = oids.get(db);
  if (!oid) {
    oid = db.$queryRaw<{ oid: number }[]>`SELECT 'vector'::regtype::oid::int AS oid`.then((rows) => rows[0]?.oid as number);
    oid.catch(() => oids.delete(db));
    oids.set(db, oid);
  }
  return oid;
}
