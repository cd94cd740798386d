import { type ChunkingOptions, chunkText } from './chunking.js';
import { HashingEmbedder } from './embedders/hashing.js';

// Runs in a worker thread (cpu-pool.ts): the CPU-bound parts of indexing, so no entry, however
// large or odd, holds the event loop that serves requests. Pure functions of their input.

export type CpuTask = { kind: 'chunk'; text: string; opts: ChunkingOptions } | { kind: 'hash-embed'; dims: number; texts: string[] };

const hashers = new Map<number, HashingEmbedder>();

/** Chunks text, or embeds texts with the hashing embedder (vectors flat in one Float32Array, row-major). */
export default async function run(task: CpuTask): Promise<string[] | Float32Array> {
  if (task.kind === 'chunk') return chunkText(task.text, task.opts);
  let hasher = hashers.get(task.dims);
  if (!hasher) {
    hasher = new HashingEmbedder(task.dims);
    hashers.set(task.dims, hasher);
  }
  const out = new Float32Array(task.texts.length * task.dims);
  task.texts.forEach((t, i) => {
    out.set(hasher.embedOne(t), i * task.dims);
  });
  return out;
}
