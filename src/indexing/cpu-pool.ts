import { availableParallelism } from 'node:os';
import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { ChunkingOptions } from './chunking.js';
import { type CpuTask, runTask } from './cpu-worker.js';
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
  /** Told of every finished task (metrics). */
  observer?: CpuPoolObserver;
}

export type CpuTaskKind = CpuTask['kind'];
/** Where a task ran: in line on the event loop (small inputs) or in a worker thread. */
export type CpuTaskPlace = 'inline' | 'thread';
export type CpuTaskOutcome = 'ok' | 'timeout' | 'error';

export interface CpuPoolObserver {
  onTask(kind: CpuTaskKind, place: CpuTaskPlace, outcome: CpuTaskOutcome): void;
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
  const observe = (task: CpuTask, place: CpuTaskPlace, outcome: CpuTaskOutcome) => opts.observer?.onTask(task.kind, place, outcome);
  // A task's budget counts from when a thread starts it: a task queued behind others (or waiting
  // for a thread to start) is not stopped for their time. The thread also says when it is done, and
  // the timer looks for that word before it stops anything: a task that finished in time while this
  // event loop was busy elsewhere (its answer not yet read) is not taken for one that ran over.
  const run = async <T>(task: CpuTask, signal?: AbortSignal): Promise<T> => {
    const budget = new AbortController();
    const { port1, port2 } = new MessageChannel();
    let timer: NodeJS.Timeout | undefined;
    const heard = (word: unknown) => {
      if (word === 'started') timer = setTimeout(expire, opts.taskTimeoutMs);
      else clearTimeout(timer);
    };
    const expire = () => {
      for (let m = receiveMessageOnPort(port1); m; m = receiveMessageOnPort(port1)) if (m.message === 'done') return;
      budget.abort();
    };
    port1.on('message', heard);
    try {
      const out = (await pool.run(
        { task, started: port2 },
        { signal: signal ? AbortSignal.any([signal, budget.signal]) : budget.signal, transferList: [port2] },
      )) as T;
      observe(task, 'thread', 'ok');
      return out;
    } catch (err) {
      const timedOut = budget.signal.aborted && !signal?.aborted;
      observe(task, 'thread', timedOut ? 'timeout' : 'error');
      if (timedOut) throw new IndexingTimeoutError(opts.taskTimeoutMs);
      throw err;
    } finally {
      clearTimeout(timer);
      port1.close();
    }
  };
  const inline = async (task: CpuTask) => {
    try {
      const out = await runTask(task);
      observe(task, 'inline', 'ok');
      return out;
    } catch (err) {
      observe(task, 'inline', 'error');
      throw err;
    }
  };
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
