import type { Embedder } from './embedder.js';
import { normalise } from './embedder.js';

// The built-in embedder: signed feature hashing of word unigrams, word bigrams and character
// 3-grams, L2-normalised. Deterministic, no download, ~100k short texts/s; lexical-fuzzy rather than
// semantic (it matches shared words and word pieces, so inflections and typos still score), which is
// why search pairs it with full-text ranking.

const STOPWORDS = new Set(
  (
    'a an and are as at be been but by can do does for from had has have how i if in into is it its ' +
    'me my no not of on or our so such than that the their them then there these they this those to ' +
    'was we were what when where which while who why will with you your'
  ).split(' '),
);

/** FNV-1a over UTF-16 code units: fast, stable across runs and platforms. */
function fnv1a(s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Lower-cased, NFKC-normalised words of letters and digits. */
export function words(text: string): string[] {
  return (
    text
      .normalize('NFKC')
      .toLowerCase()
      .match(/[\p{L}\p{N}]+/gu) ?? []
  );
}

export class HashingEmbedder implements Embedder {
  readonly id: string;
  readonly maxBatch = 256;

  constructor(readonly dims: number) {
    this.id = `hash-${dims}`;
  }

  private add(v: Float64Array, feature: string, weight: number) {
    const h = fnv1a(feature);
    const sign = fnv1a(feature, 0x9747b28c) & 1 ? 1 : -1;
    v[h % this.dims] = (v[h % this.dims] ?? 0) + sign * weight;
  }

  embedOne(text: string): number[] {
    const v = new Float64Array(this.dims);
    const content = words(text).filter((w) => !STOPWORDS.has(w));
    for (let i = 0; i < content.length; i++) {
      const w = content[i] as string;
      this.add(v, `w:${w}`, 1);
      if (i + 1 < content.length) this.add(v, `b:${w} ${content[i + 1]}`, 0.5);
      const padded = `^${w}$`;
      if (padded.length <= 3) continue;
      for (let j = 0; j + 3 <= padded.length; j++) this.add(v, `c:${padded.slice(j, j + 3)}`, 0.35);
    }
    return normalise(v);
  }

  async embed(texts: string[]): Promise<number[][]> {
    return texts.map((t) => this.embedOne(t));
  }
}
