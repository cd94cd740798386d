import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import type { Embedder } from './embedder.js';

// An optional local embedder: any sentence-embedding model exported for transformers.js (a folder with
// config.json, tokenizer.json, tokenizer_config.json and onnx/model*.onnx), run on the CPU through
// onnxruntime-node. That runtime is ~475 MB, so @huggingface/transformers is never a dependency of the
// gateway: only deployments that configure an ONNX model install it. The specifier sits in a variable so
// TypeScript does not look for its types and nothing resolves it until a model is actually loaded.
const TRANSFORMERS = '@huggingface/transformers';
export const ONNX_INSTALL_HINT = `npm install --no-save --onnxruntime-node-install=skip ${TRANSFORMERS}@4.3.1`;

// Weight files transformers.js picks by `dtype`, best first for a CPU: full precision, then the 8-bit
// exports that many model repos ship instead of (or beside) model.onnx.
const DTYPE_BY_FILE: [file: string, dtype: string][] = [
  ['model.onnx', 'fp32'],
  ['model_quantized.onnx', 'q8'],
  ['model_int8.onnx', 'int8'],
  ['model_uint8.onnx', 'uint8'],
  ['model_fp16.onnx', 'fp16'],
  ['model_q4.onnx', 'q4'],
];
const REQUIRED_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json'];

function onnxFiles(modelDir: string): string[] {
  const dir = join(modelDir, 'onnx');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.onnx')) : [];
}

/** Names of the subfolders of `dir` that look like transformers.js models (sorted; [] if `dir` is missing). */
export function onnxModelsIn(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(dir, e.name, 'tokenizer.json')) && onnxFiles(join(dir, e.name)).length > 0)
    .map((e) => e.name)
    .sort();
}

async function importTransformers(): Promise<any> {
  try {
    return await import(/* @vite-ignore */ TRANSFORMERS);
  } catch (err) {
    // Tell "not installed" apart from a broken install (say a missing native binary), which keeps its own error.
    try {
      createRequire(import.meta.url).resolve(TRANSFORMERS);
    } catch {
      throw new Error(`${TRANSFORMERS} is not installed; install it with \`${ONNX_INSTALL_HINT}\``, { cause: err });
    }
    throw err;
  }
}

// transformers.js reads its settings from one global `env`, so two loads from different parent folders
// must not interleave between setting env.localModelPath and the pipeline reading its files.
let loading: Promise<unknown> = Promise.resolve();

/**
 * Loads the model in `modelDir` (never from the network), mean-pooled and L2-normalised, with `dims`
 * read from what the model actually outputs.
 */
export function loadOnnxEmbedder(id: string, modelDir: string): Promise<Embedder> {
  const result = loading.then(() => load(id, resolve(modelDir)));
  loading = result.catch(() => undefined);
  return result;
}

async function load(id: string, dir: string): Promise<Embedder> {
  const files = onnxFiles(dir);
  const weights = DTYPE_BY_FILE.find(([file]) => files.includes(file));
  const missing = REQUIRED_FILES.filter((f) => !existsSync(join(dir, f)));
  if (!weights) missing.push(`onnx/${DTYPE_BY_FILE.map(([f]) => f).join('|')}`);
  if (missing.length > 0) throw new Error(`ONNX model folder ${dir} lacks ${missing.join(', ')}`);

  const { env, pipeline } = await importTransformers();
  // Local files only: a model hub is unreachable from these machines, and weights must never be fetched at run time.
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = dirname(dir);
  const extractor = await pipeline('feature-extraction', basename(dir), { dtype: weights?.[1], device: 'cpu' });

  const run = async (texts: string[]): Promise<number[][]> => {
    // Padding makes a batch as long as its longest text; mean pooling averages over the attention mask only,
    // so a text embeds the same alone or in any batch.
    const out = await extractor(texts, { pooling: 'mean', normalize: true });
    return out.tolist();
  };
  // The hidden size is whatever the graph emits; config.json's hidden_size is not always there or right.
  const dims = (await run(['dimension probe']))[0]?.length ?? 0;
  if (dims === 0) throw new Error(`ONNX model ${dir} produced an empty embedding`);

  return {
    id,
    dims,
    // Padded batches cost time for every text in them; 32 keeps the waste and the memory small.
    maxBatch: 32,
    embed: async (texts) => (texts.length === 0 ? [] : run(texts)),
  };
}
