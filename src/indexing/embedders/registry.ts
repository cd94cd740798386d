import type { CpuPool } from '../cpu-pool.js';
import type { Embedder } from './embedder.js';
import { HashingEmbedder } from './hashing.js';
import { OpenAIEmbedder } from './openai.js';
import { STATIC_DIMS, STATIC_EMBEDDER_ID, StaticEmbedder } from './static.js';

// Which embedding models a volume may name, and their instances (one registry per gateway). Built
// in: `hash-384`, `hash-1024` (the default for new volumes, src/domain/volumes/inputs.ts),
// `hash-1536`, and the semantic `static-use-384` (static.ts). Configured: `openai:<model>`
// (EMBEDDINGS_URL) and `onnx:<folder>` for each model folder in ONNX_MODELS_DIR (optional
// @huggingface/transformers).

const HASH_DIMS = [384, 1024, 1536];

export interface EmbeddersConfig {
  url: string | undefined;
  apiKey: string | undefined;
  model: string;
  dims: number;
  batchSize: number;
  timeoutMs: number;
  onnxModelsDir: string | undefined;
}

/** Sees every embedding call: `around` runs it (a trace span), `onError` hears of failures (metrics). */
export interface EmbedderObserver {
  around?<T>(model: string, texts: number, run: () => Promise<T>): Promise<T>;
  onError?(model: string, err: unknown): void;
}

export class EmbedderRegistry {
  private readonly instances = new Map<string, Promise<Embedder>>();

  /** `cpu`: where CPU-bound embedders (static, hashing) run, off the event loop; without it, in line. */
  constructor(
    private readonly config: EmbeddersConfig,
    private readonly cpu?: CpuPool,
    private readonly observer?: EmbedderObserver,
  ) {}

  /** Every id a volume may use on this gateway (ONNX folders are looked up when asked). */
  async available(): Promise<string[]> {
    const ids = [...HASH_DIMS.map((d) => `hash-${d}`), STATIC_EMBEDDER_ID];
    if (this.config.url) ids.push(`openai:${this.config.model}`);
    if (this.config.onnxModelsDir) {
      const { onnxModelsIn } = await import('./onnx.js');
      ids.push(...onnxModelsIn(this.config.onnxModelsDir).map((m) => `onnx:${m}`));
    }
    return ids;
  }

  async isKnown(id: string): Promise<boolean> {
    return (await this.available()).includes(id);
  }

  /** The embedder for an id (created once). @throws Error for an id this gateway does not offer */
  get(id: string): Promise<Embedder> {
    let e = this.instances.get(id);
    if (!e) {
      e = this.create(id).then((made) => this.observed(made));
      this.instances.set(id, e);
      e.catch(() => this.instances.delete(id));
    }
    return e;
  }

  private observed(embedder: Embedder): Embedder {
    const o = this.observer;
    if (!o) return embedder;
    const embed = embedder.embed.bind(embedder);
    return {
      id: embedder.id,
      dims: embedder.dims,
      maxBatch: embedder.maxBatch,
      embed: async (texts, signal) => {
        try {
          const run = () => embed(texts, signal);
          return await (o.around ? o.around(embedder.id, texts.length, run) : run());
        } catch (err) {
          if (!signal?.aborted) o.onError?.(embedder.id, err);
          throw err;
        }
      },
    };
  }

  private async create(id: string): Promise<Embedder> {
    if (id === STATIC_EMBEDDER_ID) {
      const pool = this.cpu;
      if (!pool) return new StaticEmbedder();
      return { id, dims: STATIC_DIMS, maxBatch: 256, embed: (texts, signal) => pool.staticEmbed(texts, signal) };
    }
    const hash = /^hash-(\d+)$/.exec(id);
    if (hash && HASH_DIMS.includes(Number(hash[1]))) {
      const dims = Number(hash[1]);
      const pool = this.cpu;
      if (!pool) return new HashingEmbedder(dims);
      return { id, dims, maxBatch: 256, embed: (texts, signal) => pool.hashEmbed(dims, texts, signal) };
    }
    const c = this.config;
    if (c.url && id === `openai:${c.model}`) return new OpenAIEmbedder({ ...c, url: c.url });
    if (c.onnxModelsDir && id.startsWith('onnx:')) {
      const { loadOnnxEmbedder, onnxModelsIn } = await import('./onnx.js');
      const name = id.slice('onnx:'.length);
      if (onnxModelsIn(c.onnxModelsDir).includes(name)) {
        const path = await import('node:path');
        return loadOnnxEmbedder(id, path.join(c.onnxModelsDir, name));
      }
    }
    throw new Error(`unknown embedding model ${id}`);
  }
}
