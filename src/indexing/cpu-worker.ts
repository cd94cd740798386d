import { type ChunkingOptions, chunkText } from './chunking.js';
import { HashingEmbedder } from './embedders/hashing.js';
import { StaticEmbedder } from './embedders/static.js';

// Runs in a worker thread (cpu-pool.ts): the CPU-bound parts of indexing, so no entry, however
// large or odd, holds the event loop that serves requests. Pure functions of their input.

export type CpuTask =
  | { kind: 'chunk'; text: string; opts: ChunkingOptions }
  | { kind: 'hash-embed'; dims: number; texts: string[] }
  | { kind: 'static-embed'; texts: string[] };

const hashers = new Map<number, HashingEmbedder>();
// Loaded on first use in each thread (reading its 3 MB table takes a few milliseconds), then kept.
let staticEmbedder: StaticEmbedder | undefined;

function embedder(task: Exclude<CpuTask, { kind: 'chunk' }>): { dims: number; embedOne(text: string): number[] } {
  if (task.kind === 'static-embed') {
    staticEmbedder ??= new StaticEmbedder();
    return staticEmbedder;
  }
  let hasher = hashers.get(task.dims);
  if (!hasher) {
    hasher = new HashingEmbedder(task.dims);
    hashers.set(task.dims, hasher);
  }
  return hasher;
}

/** Chunks text, or embeds texts with a built-in embedder (vectors flat in one Float32Array, row-major). */
export async function runTask(task: CpuTask): Promise<string[] | Float32Array> {
  if (task.kind === 'chunk') return chunkText(task.text, task.opts);
  const e = embedder(task);
  const out = new Float32Array(task.texts.length * e.dims);
  task.texts.forEach((t, i) => {
    out.set(e.embedOne(t), i * e.dims);
  });
  return out;
}

/**
 * The thread's entry point: says on `started` when the task begins (its time budget counts from
 * there, not from when it was queued or the thread was started) and when it is done, then answers.
 */
export default async function run({ task, started }: { task: CpuTask; started: MessagePort }): Promise<string[] | Float32Array> {
  started.postMessage('started');
  try {
    return await runTask(task);
  } finally {
    started.postMessage('done');
    started.close();
  }
}
