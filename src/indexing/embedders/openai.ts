import type { Embedder } from './embedder.js';
import { normalise, PermanentEmbeddingError as PermanentError } from './embedder.js';

export interface OpenAIEmbedderOptions {
  /** The provider's embeddings URL, or its API base (`/embeddings` is appended). */
  url: string;
  apiKey: string | undefined;
  model: string;
  dims: number;
  batchSize: number;
  timeoutMs: number;
  /** Attempts per batch before giving up (429, 5xx, timeouts and network errors are retried). */
  attempts?: number;
}

/** 0.5 s, 1 s, 2 s … capped at 10 s, with jitter: a provider's rate limit usually clears within seconds. */
function retryDelayMs(attempt: number): number {
  return Math.round(Math.min(10_000, 250 * 2 ** attempt) * (0.75 + Math.random() * 0.5));
}

/** Any OpenAI-compatible `/embeddings` endpoint (OpenAI, Azure-style proxies, vLLM, Ollama, TEI…). */
export class OpenAIEmbedder implements Embedder {
  readonly id: string;
  readonly dims: number;
  readonly maxBatch: number;
  private readonly endpoint: string;

  constructor(private readonly opts: OpenAIEmbedderOptions) {
    this.id = `openai:${opts.model}`;
    this.dims = opts.dims;
    this.maxBatch = opts.batchSize;
    this.endpoint = /\/embeddings\/?$/.test(opts.url) ? opts.url : `${opts.url.replace(/\/$/, '')}/embeddings`;
  }

  async embed(texts: string[], signal?: AbortSignal): Promise<number[][]> {
    const attempts = this.opts.attempts ?? 4;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.request(texts, signal);
      } catch (err) {
        if (err instanceof PermanentError || attempt >= attempts || signal?.aborted) throw err;
        await new Promise((r) => setTimeout(r, retryDelayMs(attempt)));
      }
    }
  }

  private async request(texts: string[], signal?: AbortSignal): Promise<number[][]> {
    const timeout = AbortSignal.timeout(this.opts.timeoutMs);
    const res = await fetch(this.endpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(this.opts.apiKey ? { authorization: `Bearer ${this.opts.apiKey}` } : {}),
      },
      body: JSON.stringify({ model: this.opts.model, input: texts, dimensions: this.dims, encoding_format: 'float' }),
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
    if (!res.ok) {
      const detail = (await res.text().catch(() => '')).slice(0, 300);
      const message = `embeddings provider answered ${res.status}: ${detail}`;
      if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) throw new PermanentError(message);
      throw new Error(message);
    }
    const body = (await res.json()) as { data?: { embedding?: unknown; index?: number }[] };
    if (!Array.isArray(body.data) || body.data.length !== texts.length) {
      throw new PermanentError(`embeddings provider returned ${body.data?.length ?? 'no'} vectors for ${texts.length} texts`);
    }
    const out: number[][] = new Array(texts.length);
    body.data.forEach((d, i) => {
      const v = d.embedding;
      if (!Array.isArray(v) || v.length !== this.dims || !v.every((x) => typeof x === 'number')) {
        throw new PermanentError(`embeddings provider returned a vector that is not ${this.dims} numbers`);
      }
      out[d.index ?? i] = normalise(v as number[]);
    });
    return out;
  }
}
