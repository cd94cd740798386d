import type { Config } from '../../config.js';
import type { CpuPool } from '../cpu-pool.js';
import type { Embedder } from './embedder.js';
import { HashingEmbedder } from './hashing.js';
import { OpenAIEmbedder } from './openai.js';

// Which embedding models a volume may name, and their instances. Built in: `hash-384`,
// `hash-1024` (default), `hash-1536`. Configured: `openai:<model>` (EMBEDDINGS_URL) and
// `onnx:<folder>` for each model folder in ONNX_MODELS_DIR (optional @huggingface/transformers).

export const DEFAULT_EMBEDDER_ID = 'hash-1024';
const HASH_DIMS = [384, 1024, 1536];

export type EmbeddersConfig = Config['embeddings'];

let config: EmbeddersConfig | undefined;
let cpu: CpuPool | undefined;
const instances = new Map<string, Promise<Embedder>>();

/** `pool`: where CPU-bound embedders (hashing) run, off the event loop; without it, in line. */
export function configureEmbedders(c: EmbeddersConfig, pool?: CpuPool): void {
  config = c;
  cpu = pool;
  instances.clear();
}

/** Every id a volume may use on this gateway (ONNX folders are looked up when asked). */
export async function availableEmbedders(): Promise<string[]> {
  const ids = HASH_DIMS.map((d) => `hash-${d}`);
  if (config?.url) ids.push(`openai:${config.model}`);
  if (config?.onnxModelsDir) {
    const { onnxModelsIn } = await import('./onnx.js');
    ids.push(...onnxModelsIn(config.onnxModelsDir).map((m) => `onnx:${m}`));
  }
  return ids;
}

export async function isKnownEmbedder(id: string): Promise<boolean> {
  return (await availableEmbedders()).includes(id);
}

/** The embedder for an id (created once per process). @throws Error for an id this gateway does not offer */
export function getEmbedder(id: string): Promise<Embedder> {
  let e = instances.get(id);
  if (!e) {
    e = create(id);
    instances.set(id, e);
    e.catch(() => instances.delete(id));
  }
  return e;
}

async function create(id: string): Promise<Embedder> {
  const hash = /^hash-(\d+)$/.exec(id);
  if (hash && HASH_DIMS.includes(Number(hash[1]))) {
    const dims = Number(hash[1]);
    const pool = cpu;
    if (!pool) return new HashingEmbedder(dims);
    return { id, dims, maxBatch: 256, embed: (texts, signal) => pool.hashEmbed(dims, texts, signal) };
  }
  if (config?.url && id === `openai:${config.model}`) {
    return new OpenAIEmbedder({ ...config, url: config.url });
  }
  if (config?.onnxModelsDir && id.startsWith('onnx:')) {
    const { loadOnnxEmbedder, onnxModelsIn } = await import('./onnx.js');
    const name = id.slice('onnx:'.length);
    if (onnxModelsIn(config.onnxModelsDir).includes(name)) {
      const path = await import('node:path');
      return loadOnnxEmbedder(id, path.join(config.onnxModelsDir, name));
    }
  }
  throw new Error(`unknown embedding model ${id}`);
}
