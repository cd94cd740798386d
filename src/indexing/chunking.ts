import { RecursiveCharacterTextSplitter } from '@langchain/textsplitters';
import { Tiktoken } from 'js-tiktoken/lite';
import cl100k from 'js-tiktoken/ranks/cl100k_base';

// Text → chunks. Sizes are in tokens of OpenAI's cl100k encoding (ranks bundled with js-tiktoken, so
// nothing is downloaded): close to what hosted embedders count, and a fair proxy for the others.

export type ChunkingStrategy = 'recursive' | 'fixed' | 'none';

export interface ChunkingOptions {
  strategy: ChunkingStrategy;
  /** Largest chunk, in tokens. */
  size: number;
  /** Tokens shared by neighbouring chunks. */
  overlap: number;
}

const encoding = new Tiktoken(cl100k);

export function countTokens(text: string): number {
  return encoding.encode(text).length;
}

/** Paragraph → line → sentence → word → character, as DESIGN.md specifies. */
const SEPARATORS = ['\n\n', '\n', '. ', '? ', '! ', ' ', ''];

/** Splits text for indexing; empty or whitespace-only text gives no chunks. */
export async function chunkText(text: string, opts: ChunkingOptions): Promise<string[]> {
  if (text.trim() === '') return [];
  switch (opts.strategy) {
    case 'none':
      return [text];
    case 'fixed':
      return fixedWindows(text, opts.size, opts.overlap);
    case 'recursive': {
      const splitter = new RecursiveCharacterTextSplitter({
        chunkSize: opts.size,
        chunkOverlap: opts.overlap,
        separators: SEPARATORS,
        lengthFunction: countTokens,
      });
      const chunks = await splitter.splitText(text);
      return chunks.filter((c) => c.trim() !== '');
    }
  }
}

/** Windows of exactly `size` tokens (the last may be shorter), each starting `size - overlap` after the previous. */
function fixedWindows(text: string, size: number, overlap: number): string[] {
  const tokens = encoding.encode(text);
  const step = Math.max(1, size - overlap);
  const out: string[] = [];
  for (let start = 0; start < tokens.length; start += step) {
    out.push(encoding.decode(tokens.slice(start, start + size)));
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
