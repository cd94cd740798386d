import { readFileSync } from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';
import type { Embedder } from './embedder.js';
import { normalise } from './embedder.js';

// The built-in semantic embedder, `static-use-384`: a static table distilled from Universal Sentence
// Encoder lite by scripts/distill-embedder.ts (each of its 8,000 SentencePiece tokens embedded once,
// centred, PCA to 384 dims, SIF-weighted by token frequency, int8). A text's vector is the mean of its
// tokens' rows, L2-normalised: semantic enough to match paraphrases that share no words (hashing
// cannot), with no model, no download and no native code at run time; the table is 3.1 MB in models/.
// Not the default: on the labelled corpus it wins semantic recall but loses hybrid (BENCHMARKS.md).

export const STATIC_EMBEDDER_ID = 'static-use-384';
/** Its output dimension (the table's): one of the dimensions with an HNSW index. */
export const STATIC_DIMS = 384;

/** The table's folder: models/ at the repository root, three levels above this file in src/ and in dist/. */
const TABLE_DIR = new URL('../../../models/static-use-384/', import.meta.url);

export interface StaticTable {
  dims: number;
  /** Per-row dequantisation factor. */
  scales: Float32Array;
  /** vocabSize × dims, row-major. */
  rows: Int8Array;
  /** [piece, log-probability] in id order: the SentencePiece unigram vocabulary. */
  vocab: [string, number][];
}

/** Reads the committed table (synchronously: once per process or worker thread, ~5 ms). */
export function readStaticTable(dir: URL = TABLE_DIR): StaticTable {
  const meta = JSON.parse(readFileSync(new URL('meta.json', dir), 'utf8')) as { dims: number; vocabSize: number };
  const vocab = readFileSync(new URL('vocab.tsv', dir), 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line): [string, number] => {
      const tab = line.lastIndexOf('\t');
      return [line.slice(0, tab), Number(line.slice(tab + 1))];
    });
  const bin = readFileSync(new URL('vectors.bin', dir));
  const n = meta.vocabSize;
  if (vocab.length !== n || bin.length !== n * 4 + n * meta.dims) {
    throw new Error(`static embedder table in ${dir.pathname} is inconsistent (vocab ${vocab.length}, ${bin.length} bytes of vectors)`);
  }
  // Copies: the Buffer may sit at an offset in a shared pool, which typed-array views need aligned.
  const bytes = new Uint8Array(bin);
  return { dims: meta.dims, scales: new Float32Array(bytes.buffer, 0, n), rows: new Int8Array(bytes.buffer, n * 4, n * meta.dims), vocab };
}

/**
 * USE-lite's tokenizer as a Hugging Face Unigram tokenizer: NFKC, whitespace runs folded to one
 * space, SentencePiece's "▁" word marker, Viterbi over the pieces' log-probabilities. Text is split
 * at whitespace first, so each lattice is one word long.
 */
function createTokenizer(vocab: [string, number][]): Tokenizer {
  return new Tokenizer(
    {
      normalizer: {
        type: 'Sequence',
        normalizers: [{ type: 'NFKC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }],
      },
      pre_tokenizer: {
        type: 'Sequence',
        pretokenizers: [{ type: 'WhitespaceSplit' }, { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always' }],
      },
      model: { type: 'Unigram', unk_id: 0, vocab },
      decoder: null,
      post_processor: null,
      added_tokens: [],
    },
    {},
  );
}

/** Words longer than this (runs without a space: base64, hashes) are cut, keeping tokenizing linear and cheap. */
const MAX_WORD = 64;
/** Distinct words whose token ids are remembered; the cache starts over past it. */
const WORD_CACHE = 50_000;

export class StaticEmbedder implements Embedder {
  readonly id = STATIC_EMBEDDER_ID;
  readonly dims: number;
  readonly maxBatch = 256;
  private readonly tokenizer: Tokenizer;
  // The tokenizer splits at whitespace before its Viterbi pass, so a word always gets the same ids:
  // remembering them skips the (slow, allocation-heavy) lattice for the words prose repeats.
  private readonly words = new Map<string, number[]>();

  constructor(private readonly table: StaticTable = readStaticTable()) {
    if (table.dims !== STATIC_DIMS) throw new Error(`static embedder table has ${table.dims} dims, expected ${STATIC_DIMS}`);
    this.dims = table.dims;
    this.tokenizer = createTokenizer(table.vocab);
  }

  /** Token ids of a text (unknown characters are id 0, whose row is zero). */
  tokenIds(text: string): number[] {
    const ids: number[] = [];
    for (const raw of text.normalize('NFKC').split(/\s+/)) {
      if (raw.length === 0) continue;
      const word = raw.length > MAX_WORD ? raw.slice(0, MAX_WORD) : raw;
      const wordIds = this.words.get(word) ?? this.encodeWord(word);
      for (const id of wordIds) ids.push(id);
    }
    return ids;
  }

  private encodeWord(word: string): number[] {
    const wordIds: number[] = this.tokenizer.encode(word, { add_special_tokens: false }).ids;
    if (this.words.size >= WORD_CACHE) this.words.clear();
    this.words.set(word, wordIds);
    return wordIds;
  }

  embedOne(text: string): number[] {
    const { dims, scales, rows } = this.table;
    const sum = new Float32Array(dims);
    for (const id of this.tokenIds(text)) {
      const scale = scales[id] as number;
      if (!(scale > 0)) continue;
      const row = rows.subarray(id * dims, (id + 1) * dims);
      for (let d = 0; d < dims; d++) sum[d] = (sum[d] as number) + (row[d] as number) * scale;
    }
    // The mean's length does not matter once normalised, so the sum is enough.
    return normalise(sum);
  }

  async embed(texts: string[]): Promise<number[][]> {
    return texts.map((t) => this.embedOne(t));
  }
}
