import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import type { ChunkingOptions } from './chunking.js';
import runTask, { type CpuTask } from './cpu-worker.js';
import { STATIC_DIMS } from './embedders/static.js';

// Worker threads for the CPU-bound parts of indexing (chunking, the built-in embedders), with a time
// budget per task: the event loop keeps serving requests (and health checks, and SIGTERM) whatever
// an entry holds, and a task that runs past its budget is stopped (its thread is replaced).

/**
 * Work smaller than this (characters of text) runs in line: chunking or hashing 16 KiB takes well
 * under a millisecond in linear time, less than handing it to a thread (and most entries are
 * small). Only larger inputs, the ones that could hold the event loop, go to the threads.
 */
export const INLINE_LIMIT = 16 * 1024;
/**
 * The same for the static embedder, whose tokenizer costs ~4 µs per character of words it has not
 * seen yet (~0.4 µs once they are cached): a search's query runs in line, an indexing batch in a thread.
 */
export const STATIC_INLINE_LIMIT = 512;

export interface CpuPoolOptions {
  /** Worker threads (INDEXING_THREADS). */
  threads: number;
  /** Longest a task may run before it is stopped (INDEXING_TIMEOUT_MS). */
  taskTimeoutMs: number;
}

/** A task ran past its budget: the same input would again, so jobs record it rather than retry. */
export class IndexingTimeoutError extends Error {
  readonly permanent = true;
  constructor(ms: number) {
    super(`indexing took longer than ${ms} ms and was stopped (INDEXING_TIMEOUT_MS); the text is too large or too unusual to chunk`);
    this.name = 'IndexingTimeoutError';
  }
}

export interface CpuPool {
  chunk(text: string, opts: ChunkingOptions, signal?: AbortSignal): Promise<string[]>;
  /** Hashing-embedder vectors, one per text, in order. */
  hashEmbed(dims: number, texts: string[], signal?: AbortSignal): Promise<number[][]>;
  /** Static-embedder (`static-use-384`) vectors, one per text, in order. */
  staticEmbed(texts: string[], signal?: AbortSignal): Promise<number[][]>;
  close(): Promise<void>;
}

/** Default: one thread per core but one (left to the event loop), at least one. */
export function defaultIndexingThreads(): number {
  return Math.max(1, availableParallelism() - 1);
}

// Run from TypeScript sources (tsx, vitest), the worker needs the same loader; built output is plain JS.
const workerUrl = new URL(`./cpu-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);

export function createCpuPool(opts: CpuPoolOptions): CpuPool {
  const pool = new Piscina({
    filename: workerUrl.href,
    minThreads: 0,
    maxThreads: Math.max(1, opts.threads),
    idleTimeout: 30_000,
    ...(workerUrl.pathname.endsWith('.ts') ? { execArgv: ['--import', 'tsx'] } : {}),
  });
  const run = async <T>(task: CpuTask, signal?: AbortSignal): Promise<T> => {
    const budget = AbortSignal.timeout(opts.taskTimeoutMs);
    try {
      return (await pool.run(task, { signal: signal ? AbortSignal.any([signal, budget]) : budget })) as T;
    } catch (err) {
      if (budget.aborted && !signal?.aborted) throw new IndexingTimeoutError(opts.taskTimeoutMs);
      throw err;
    }
  };
  const inline = (task: CpuTask) => runTask(task);
  const embed = async (task: Extract<CpuTask, { texts: string[] }>, dims: number, inlineLimit: number, signal?: AbortSignal) => {
    const size = task.texts.reduce((n, t) => n + t.length, 0);
    const flat = (await (size <= inlineLimit ? inline(task) : run<Float32Array>(task, signal))) as Float32Array;
    return task.texts.map((_, i) => Array.from(flat.subarray(i * dims, (i + 1) * dims)));
  };
  return {
    chunk: async (text, chunking, signal) =>
      (await (text.length <= INLINE_LIMIT
        ? inline({ kind: 'chunk', text, opts: chunking })
        : run({ kind: 'chunk', text, opts: chunking }, signal))) as string[],
    hashEmbed: (dims, texts, signal) => embed({ kind: 'hash-embed', dims, texts }, dims, INLINE_LIMIT, signal),
    staticEmbed: (texts, signal) => embed({ kind: 'static-embed', texts }, STATIC_DIMS, STATIC_INLINE_LIMIT, signal),
    close: () => pool.destroy(),
  };
}
