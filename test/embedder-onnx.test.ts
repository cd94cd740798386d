import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Embedder } from '../src/indexing/embedders/embedder.js';
import { loadOnnxEmbedder, onnxModelsIn } from '../src/indexing/embedders/onnx.js';

// No real model can be downloaded here, so the test builds a tiny one: a BERT-shaped graph (input_ids and
// attention_mask in, last_hidden_state out) whose only op is a Gather over an 8-wide embedding table.
// That exercises everything our code owns (local loading, tokenising, padding, pooling, normalising, dims).

const installed = (() => {
  try {
    createRequire(import.meta.url).resolve('@huggingface/transformers');
    return true;
  } catch {
    return false;
  }
})();

const DIMS = 8;
const VOCAB = (
  '[PAD] [UNK] [CLS] [SEP] the a of in to and quick brown fox jumps over lazy dog volumes store files ' +
  'folder search finds text chunk model vector index query answer ##s ##ing ##ed'
).split(' ');

// --- A protobuf writer just big enough for an ONNX ModelProto (field numbers from onnx.proto). ---
type Field = [number, number | string | Uint8Array | Field[]];
function varint(n: number): number[] {
  const out: number[] = [];
  for (let v = BigInt(n); ; v >>= 7n) {
    if (v < 0x80n) return [...out, Number(v)];
    out.push(Number(v & 0x7fn) | 0x80);
  }
}
function message(fields: Field[]): Uint8Array {
  const bytes: number[] = [];
  for (const [no, value] of fields) {
    if (typeof value === 'number') {
      bytes.push(...varint(no << 3), ...varint(value));
      continue;
    }
    const body = typeof value === 'string' ? new TextEncoder().encode(value) : value instanceof Uint8Array ? value : message(value);
    bytes.push(...varint((no << 3) | 2), ...varint(body.length), ...body);
  }
  return Uint8Array.from(bytes);
}
// f(fieldNumber, value): a call rather than a [n, v] literal keeps the nested messages one per line.
const f = (no: number, value: Field[1]): Field => [no, value];
const FLOAT = 1;
const INT64 = 7;
/** A graph input (field 11) or output (12): a named tensor of `elemType` with fixed or symbolic dims. */
function valueInfo(no: number, name: string, elemType: number, dims: (number | string)[]): Field {
  const shape = dims.map((d) => f(1, [f(typeof d === 'number' ? 1 : 2, d)])); // TensorShapeProto.dim{dim_value | dim_param}
  const tensorType = [f(1, elemType), f(2, shape)]; // TypeProto.Tensor{elem_type, shape}
  return f(no, [f(1, name), f(2, [f(1, tensorType)])]); // ValueInfoProto{name, type: TypeProto{tensor_type}}
}

function tinyOnnxModel(): Uint8Array {
  const table = new Float32Array(VOCAB.length * DIMS);
  for (let i = 0; i < table.length; i++) table[i] = Math.sin(i * 1.7 + 0.3);
  const graph: Field[] = [
    // NodeProto{input, input, output, name, op_type, attribute{name, i, type: INT}}
    f(1, [
      f(1, 'table'),
      f(1, 'input_ids'),
      f(2, 'last_hidden_state'),
      f(3, 'lookup'),
      f(4, 'Gather'),
      f(5, [f(1, 'axis'), f(3, 0), f(20, 2)]),
    ]),
    f(2, 'tiny-embedder'),
    // TensorProto{dims, dims, data_type, name, raw_data}
    f(5, [f(1, VOCAB.length), f(1, DIMS), f(2, FLOAT), f(8, 'table'), f(9, new Uint8Array(table.buffer))]),
    // Graph inputs (field 11) and output (12); attention_mask is declared, as BERT exports do, but unused.
    valueInfo(11, 'input_ids', INT64, ['batch', 'sequence']),
    valueInfo(11, 'attention_mask', INT64, ['batch', 'sequence']),
    valueInfo(12, 'last_hidden_state', FLOAT, ['batch', 'sequence', DIMS]),
  ];
  // ModelProto{ir_version, producer_name, graph, opset_import{domain, version}}
  return message([f(1, 8), f(2, 'volumes-test'), f(7, graph), f(8, [f(1, ''), f(2, 13)])]);
}

function writeTinyModel(dir: string) {
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  writeFileSync(join(dir, 'onnx', 'model.onnx'), tinyOnnxModel());
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'bert', hidden_size: DIMS, vocab_size: VOCAB.length }));
  const special = (id: number) => ({
    id,
    content: VOCAB[id],
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [0, 1, 2, 3].map(special),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: { type: 'BertProcessing', sep: ['[SEP]', 3], cls: ['[CLS]', 2] },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(VOCAB.map((w, i) => [w, i])),
    },
  };
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  writeFileSync(
    join(dir, 'tokenizer_config.json'),
    JSON.stringify({ tokenizer_class: 'BertTokenizer', model_max_length: 64, pad_token: '[PAD]', unk_token: '[UNK]' }),
  );
}

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'onnx-embedder-'));
  writeTinyModel(join(root, 'tiny-bert'));
  mkdirSync(join(root, 'not-a-model'));
  writeFileSync(join(root, 'not-a-model', 'tokenizer.json'), '{}');
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const norm = (v: number[]) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

describe('onnxModelsIn', () => {
  it('lists only folders with onnx weights and a tokenizer', () => {
    expect(onnxModelsIn(root)).toEqual(['tiny-bert']);
    expect(onnxModelsIn(join(root, 'missing'))).toEqual([]);
  });
});

describe.runIf(!installed)('loadOnnxEmbedder without @huggingface/transformers', () => {
  it('says how to install it', async () => {
    await expect(loadOnnxEmbedder('onnx-tiny', join(root, 'tiny-bert'))).rejects.toThrow(/not installed; install it with/);
  });
});

// CI installs the optional package (.ci/run) and sets REQUIRE_ONNX=1, so there this suite cannot skip quietly.
it.runIf(process.env.REQUIRE_ONNX === '1')('@huggingface/transformers is installed where REQUIRE_ONNX=1', () => {
  expect(installed).toBe(true);
});

describe.skipIf(!installed)('loadOnnxEmbedder', () => {
  let embedder: Embedder;
  beforeAll(async () => {
    embedder = await loadOnnxEmbedder('onnx-tiny', join(root, 'tiny-bert'));
  });

  it('reads dims from the model output', () => {
    expect(embedder.id).toBe('onnx-tiny');
    expect(embedder.dims).toBe(DIMS);
    expect(embedder.maxBatch).toBeGreaterThan(0);
  });

  it('embeds deterministically, distinctly, to unit length, the same alone or batched', async () => {
    const texts = ['the quick brown fox jumps over the lazy dog', 'search finds text in volumes', 'Search finds text', 'unknown words'];
    const batch = await embedder.embed(texts);
    expect(batch).toHaveLength(texts.length);
    for (const v of batch) {
      expect(v).toHaveLength(DIMS);
      expect(norm(v)).toBeCloseTo(1, 5);
    }
    const again = await embedder.embed([texts[1] as string, texts[1] as string]);
    expect(again[0]).toEqual(again[1]);
    expect(batch[1]).not.toEqual(batch[2]);
    expect(batch[0]).not.toEqual(batch[1]);
    for (const [i, text] of texts.entries()) {
      const [single] = await embedder.embed([text]);
      for (const [j, x] of (single ?? []).entries()) expect(x).toBeCloseTo(batch[i]?.[j] as number, 5);
    }
    expect(await embedder.embed([])).toEqual([]);
  });

  it('refuses a folder that is not a model', async () => {
    await expect(loadOnnxEmbedder('x', join(root, 'not-a-model'))).rejects.toThrow(/lacks config\.json/);
  });
});
