/**
 * Text with the shape of real notes for the search benchmarks: the labelled corpus
 * (test/fixtures/search-corpus.json) and paragraphs of its sentences drawn by a seeded generator, so
 * every run writes the same texts.
 */
import fs from 'node:fs/promises';
import path from 'node:path';

export const corpus = JSON.parse(await fs.readFile(path.resolve(import.meta.dirname, '../test/fixtures/search-corpus.json'), 'utf8')) as {
  documents: { text: string }[];
  queries: { query: string }[];
};
export const sentences = corpus.documents.flatMap((d) => d.text.split(/(?<=\.)\s+/));
let seed = 42;
const rand = () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed / 2 ** 31;
};
export const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)] as T;
/** `n` sentences of the corpus, drawn at random (a 64-token chunk is about 3). */
export const paragraph = (n: number) => Array.from({ length: n }, () => pick(sentences)).join(' ');
