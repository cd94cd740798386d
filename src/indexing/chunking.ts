import { decode, encode as encodeCl100k } from 'gpt-tokenizer/encoding/cl100k_base';

// Text → chunks. Sizes are in tokens of OpenAI's cl100k encoding (ranks bundled with gpt-tokenizer,
// so nothing is downloaded): close to what hosted embedders count, and a fair proxy for the others.
// gpt-tokenizer rather than js-tiktoken: the same tokens, ~4× faster on ordinary text.
//
// The recursive splitter is ours rather than LangChain's RecursiveCharacterTextSplitter, with the
// same rules (separators in order, each kept at the start of the piece it opens, pieces merged up to
// the size with an overlap): LangChain's last resort splits into UTF-16 code units, which cuts
// surrogate pairs (an emoji became two invalid halves Postgres refuses) and re-counts every merge,
// so a long run without separators took minutes. Here each piece is counted once and the last
// resort cuts at code points, so any input is chunked in time linear in its length.

export type ChunkingStrategy = 'recursive' | 'fixed' | 'none';

export interface ChunkingOptions {
  strategy: ChunkingStrategy;
  /** Largest chunk, in tokens. */
  size: number;
  /** Tokens shared by neighbouring chunks. */
  overlap: number;
}

/**
 * Longest run (in code points) of non-space or of space characters handed to BPE in one piece.
 * Byte-pair merging is quadratic in the length of a piece, and the cl100k pre-tokenizer makes one
 * piece of any run of letters (or symbols, or spaces): 16k letters after one separator took ~50 s.
 * Longer runs are cut into pieces of this size first, as search engines cap token length, so the
 * cost is linear in the text; ordinary text (words shorter than this) is encoded exactly.
 */
export const MAX_RUN = 64;
/**
 * A run longer than MAX_RUN, matched at most MAX_RUN² code points at a time: V8's regexp engine
 * runs out of stack on one unbounded match of a few MiB (6 MiB of one letter did), so a longer run
 * is found as several matches, each cut into MAX_RUN pieces (the bound is a multiple of MAX_RUN, so
 * the cuts fall where they would in one match; a tail of MAX_RUN or fewer stays ordinary text).
 */
const LONG_RUN = new RegExp(`\\S{${MAX_RUN + 1},${MAX_RUN * MAX_RUN}}|\\s{${MAX_RUN + 1},${MAX_RUN * MAX_RUN}}`, 'gu');

/** Special-token text such as `<|endoftext|>` is ordinary text in an entry, never a control token. */
const PLAIN = { disallowedSpecial: new Set<string>() };

/** Cuts `text` into pieces BPE may take whole: ordinary stretches, and over-long runs in MAX_RUN code points. */
function bpePieces(text: string): string[] {
  const out: string[] = [];
  let last = 0;
  for (const m of text.matchAll(LONG_RUN)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    const points = Array.from(m[0]);
    for (let i = 0; i < points.length; i += MAX_RUN) out.push(points.slice(i, i + MAX_RUN).join(''));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

/** cl100k tokens of `text`, with over-long runs encoded in MAX_RUN pieces (linear time). */
export function encode(text: string): number[] {
  const out: number[] = [];
  for (const piece of bpePieces(text)) for (const t of encodeCl100k(piece, PLAIN)) out.push(t);
  return out;
}

export function countTokens(text: string): number {
  let n = 0;
  for (const piece of bpePieces(text)) n += encodeCl100k(piece, PLAIN).length;
  return n;
}

/** Paragraph → line → sentence → word, as DESIGN.md specifies; then code points (see `hardSplit`). */
const SEPARATORS = ['\n\n', '\n', '. ', '? ', '! ', ' '];

/** Splits text for indexing; empty or whitespace-only text gives no chunks. */
export async function chunkText(text: string, opts: ChunkingOptions): Promise<string[]> {
  if (text.trim() === '') return [];
  switch (opts.strategy) {
    case 'none':
      return [text];
    case 'fixed':
      return fixedWindows(text, opts.size, opts.overlap);
    case 'recursive':
      return splitRecursive(text, SEPARATORS, opts.size, opts.overlap)
        .map((c) => c.trim())
        .filter((c) => c !== '');
  }
}

interface Piece {
  text: string;
  tokens: number;
}

/** Splits at the first separator `text` holds; pieces still too large go down to the next separators. */
function splitRecursive(text: string, separators: string[], size: number, overlap: number): string[] {
  const at = separators.findIndex((s) => text.includes(s));
  if (at < 0) return hardSplit(text, size, overlap);
  const sep = separators[at] as string;
  const rest = separators.slice(at + 1);
  const out: string[] = [];
  let small: Piece[] = [];
  for (const part of splitKeeping(text, sep)) {
    const tokens = countTokens(part);
    if (tokens <= size) {
      small.push({ text: part, tokens });
      continue;
    }
    if (small.length > 0) append(out, merge(small, size, overlap));
    small = [];
    append(out, splitRecursive(part, rest, size, overlap));
  }
  if (small.length > 0) append(out, merge(small, size, overlap));
  return out;
}

/** Appends one by one: `push(...items)` passes each as an argument, and a few hundred thousand overflow the stack. */
function append(out: string[], items: string[]): void {
  for (const item of items) out.push(item);
}

/** `text` split before each `sep` (the separator opens the piece after it), empty pieces dropped. */
function splitKeeping(text: string, sep: string): string[] {
  const parts: string[] = [];
  let from = 0;
  for (let i = text.indexOf(sep, 1); i >= 0; i = text.indexOf(sep, i + sep.length)) {
    if (i > from) parts.push(text.slice(from, i));
    from = i;
  }
  if (from < text.length) parts.push(text.slice(from));
  return parts;
}

/**
 * The last resort for text without any separator: runs of MAX_RUN code points (a single code point
 * when even a run is larger than the chunk size), merged up to the size. Never cuts inside a code point.
 */
function hardSplit(text: string, size: number, overlap: number): string[] {
  const units: Piece[] = [];
  for (const piece of bpePieces(text)) {
    const points = Array.from(piece);
    for (let i = 0; i < points.length; i += MAX_RUN) {
      const run = points.slice(i, i + MAX_RUN).join('');
      const tokens = countTokens(run);
      if (tokens <= size) units.push({ text: run, tokens });
      else for (const p of Array.from(run)) units.push({ text: p, tokens: countTokens(p) });
    }
  }
  return merge(units, size, overlap);
}

/** Joins consecutive pieces up to `size` tokens; each chunk after the first starts with up to `overlap` tokens of the one before. */
function merge(pieces: Piece[], size: number, overlap: number): string[] {
  const out: string[] = [];
  const current: Piece[] = [];
  let total = 0;
  for (const p of pieces) {
    if (current.length > 0 && total + p.tokens > size) {
      out.push(current.map((c) => c.text).join(''));
      // Keep the tail that fits the overlap (and leaves room for this piece).
      while (current.length > 0 && (total > overlap || total + p.tokens > size)) {
        total -= (current.shift() as Piece).tokens;
      }
    }
    current.push(p);
    total += p.tokens;
  }
  if (current.length > 0) out.push(current.map((c) => c.text).join(''));
  return out;
}

/** Windows of exactly `size` tokens (the last may be shorter), each starting `size - overlap` after the previous. */
function fixedWindows(text: string, size: number, overlap: number): string[] {
  const tokens = encode(text);
  const step = Math.max(1, size - overlap);
  const out: string[] = [];
  for (let start = 0; start < tokens.length; start += step) {
    out.push(decode(tokens.slice(start, start + size)));
    if (start + size >= tokens.length) break;
  }
  return out.filter((c) => c.trim() !== '');
}

/**
 * JSON content as indexable text: one `key.path: value` line per scalar (arrays of scalars joined
 * with commas), so both the words and the field names they sit under are searchable.
 */
export function flattenJson(value: unknown): string {
  const lines: string[] = [];
  const walk = (v: unknown, key: string) => {
    if (v === null || v === undefined) return;
    if (Array.isArray(v)) {
      if (v.every((x) => x === null || typeof x !== 'object')) {
        const items = v.filter((x) => x !== null).map(String);
        if (items.length > 0) lines.push(key ? `${key}: ${items.join(', ')}` : items.join(', '));
        return;
      }
      v.forEach((x, i) => {
        walk(x, key ? `${key}.${i}` : String(i));
      });
      return;
    }
    if (typeof v === 'object') {
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) walk(x, key ? `${key}.${k}` : k);
      return;
    }
    lines.push(key ? `${key}: ${String(v)}` : String(v));
  };
  walk(value, '');
  return lines.join('\n');
}
