/**
 * The one interface every embedding model implements. `id` is what a volume's
 * `embedding_model_id` names and what each chunk records; `dims` is fixed per id.
 * `embed` returns one L2-normalised vector of `dims` numbers per input text, in order.
 */
export interface Embedder {
  readonly id: string;
  readonly dims: number;
  /** Largest batch `embed` should be handed at once (callers split bigger ones). */
  readonly maxBatch: number;
  /** `signal` stops the work (a job that is stopping or cancelled). */
  embed(texts: string[], signal?: AbortSignal): Promise<number[][]>;
}

/** Scales a vector to unit length in place (a zero vector stays zero). */
export function normalise(v: Float32Array | Float64Array | number[]): number[] {
  let sum = 0;
  for (const x of v) sum += x * x;
  const norm = Math.sqrt(sum);
  return Array.from(v, (x) => (norm > 0 ? x / norm : 0));
}

/** Embeds any number of texts through an embedder, `maxBatch` at a time. */
export async function embedAll(embedder: Embedder, texts: string[], signal?: AbortSignal): Promise<number[][]> {
  const out: number[][] = [];
  for (let i = 0; i < texts.length; i += embedder.maxBatch) {
    signal?.throwIfAborted();
    const batch = await embedder.embed(texts.slice(i, i + embedder.maxBatch), signal);
    if (batch.length !== Math.min(embedder.maxBatch, texts.length - i)) {
      throw new Error(`embedder ${embedder.id} returned ${batch.length} vectors for ${texts.slice(i, i + embedder.maxBatch).length} texts`);
    }
    for (const v of batch) {
      if (v.length !== embedder.dims) throw new Error(`embedder ${embedder.id} returned ${v.length} dims, expected ${embedder.dims}`);
      out.push(v);
    }
  }
  return out;
}

/** An input the embedder will refuse however often it is asked: jobs record it rather than retry. */
export class PermanentEmbeddingError extends Error {
  readonly permanent = true;
}
