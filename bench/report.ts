import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

// What every benchmark script shares: percentiles, the machine line, and writing its own section of
// BENCHMARKS.md without touching the others.

export const BENCHMARKS = path.resolve(import.meta.dirname, '..', 'BENCHMARKS.md');

export interface Stats {
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export function stats(samples: number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: sorted.at(-1) ?? Number.NaN };
}

export const ms = (n: number) => `${n.toFixed(2)} ms`;

export function machine(): string {
  const cpus = os.cpus();
  return `${cpus.length} cores (${cpus[0]?.model.trim() ?? 'unknown CPU'}), ${Math.round(os.totalmem() / 1024 ** 3)} GiB RAM, Node ${process.version}, ${os.platform()} ${os.release()}`;
}

/** Replaces the `## <heading>` section of BENCHMARKS.md (up to the next `## ` heading), or appends it. */
export async function writeSection(heading: string, body: string): Promise<void> {
  const section = `## ${heading}\n\n${body.trimEnd()}\n`;
  let doc: string;
  try {
    doc = await fs.readFile(BENCHMARKS, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    doc = '# Benchmarks\n\nMeasured numbers for this gateway, each section written by its script under `bench/`.\n';
  }
  const escaped = heading.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const start = doc.search(new RegExp(`^## ${escaped}[ \\t]*$`, 'm'));
  if (start === -1) {
    doc = `${doc.trimEnd()}\n\n${section}`;
  } else {
    const rest = doc.slice(start + 1);
    const nextOffset = rest.search(/^## /m);
    const end = nextOffset === -1 ? doc.length : start + 1 + nextOffset;
    doc = `${doc.slice(0, start)}${section}${end < doc.length ? `\n${doc.slice(end)}` : ''}`;
  }
  await fs.writeFile(BENCHMARKS, doc.endsWith('\n') ? doc : `${doc}\n`);
  process.stdout.write(`${section}\nUpdated ${path.relative(process.cwd(), BENCHMARKS) || BENCHMARKS}\n`);
}
