#!/usr/bin/env node
// A hand-written onnxruntime-node client with one of the mistakes people make in the field.
// It decodes greedily and dumps what it fed at every step (stepK.json, before the run, so the
// failing step is on disk too); check-feeds must name the step and the input of each mistake.
//
//   node naive_loop.js MODEL.onnx --mistake NAME --prompt 3,17,5 --max-new-tokens 3 --dump DIR [--source-ids 5,77,9]
//
// Mistakes (decoder-only): zero_past_at_step0 (a zero past of length 1 instead of an empty one),
// query_heads_in_past (num_attention_heads instead of the KV heads), int32_ids, positions_not_advanced.
// Merged seq2seq: every_present_fed_back (the cache branch's cross-attention placeholders too).
// --mistake none is the correct loop.
'use strict';

const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

const MISTAKES = ['none', 'zero_past_at_step0', 'query_heads_in_past', 'int32_ids', 'positions_not_advanced', 'every_present_fed_back'];

function parse(argv) {
  const args = { model: argv[0], mistake: 'none', prompt: [], maxNew: 3, dump: null, source: [] };
  for (let i = 1; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === '--mistake') args.mistake = value;
    else if (flag === '--prompt') args.prompt = value.split(',').filter((s) => s.trim() !== '').map(Number);
    else if (flag === '--max-new-tokens') args.maxNew = Number(value);
    else if (flag === '--dump') args.dump = value;
    else if (flag === '--source-ids') args.source = value.split(',').filter((s) => s.trim() !== '').map(Number);
    else throw new Error(`unknown option ${flag}`);
  }
  if (!MISTAKES.includes(args.mistake)) throw new Error(`--mistake must be one of ${MISTAKES.join(', ')}`);
  return args;
}

const int64 = (values, dims) => new ort.Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), dims);
const ids = (values, mistake) => (mistake === 'int32_ids'
  ? new ort.Tensor('int32', Int32Array.from(values), [1, values.length])
  : int64(values, [1, values.length]));
const ones = (n) => int64(Array(n).fill(1), [1, n]);
const zeros = (dims) => new ort.Tensor('float32', new Float32Array(dims.reduce((a, b) => a * b, 1)), dims);

function dump(dir, step, feeds) {
  const entries = {};
  for (const [name, t] of Object.entries(feeds)) {
    const data = t.type === 'float32'
      ? Array.from(t.data)
      : t.type === 'bool' ? Array.from(t.data, (v) => v !== 0) : Array.from(t.data, (v) => Number(v));
    entries[name] = { dtype: t.type, shape: t.dims, data };
  }
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, `step${step}.json`), JSON.stringify(entries));
}

function argmax(logits) {
  const vocab = logits.dims[logits.dims.length - 1];
  const last = logits.data.subarray(logits.data.length - vocab);
  return last.reduce((best, value, i) => (value > last[best] ? i : best), 0);
}

async function main() {
  const args = parse(process.argv.slice(2));
  const session = await ort.InferenceSession.create(args.model, { logSeverityLevel: 4 });
  const metadata = Object.fromEntries(session.inputMetadata.map((m) => [m.name, m]));
  const pastNames = session.inputNames.filter((n) => n.startsWith('past_key_values.'));
  const merged = session.inputNames.includes('use_cache_branch');
  let encoderHidden = null;
  if (merged) {
    const encoder = await ort.InferenceSession.create(path.join(path.dirname(args.model), 'encoder_model.onnx'), { logSeverityLevel: 4 });
    const out = await encoder.run({ input_ids: int64(args.source, [1, args.source.length]), attention_mask: ones(args.source.length) });
    encoderHidden = out.last_hidden_state;
  }
  const config = JSON.parse(fs.readFileSync(path.join(path.dirname(args.model), 'config.json'), 'utf8'));
  let tokens = merged ? [config.decoder_start_token_id, ...args.prompt] : [...args.prompt];
  let presents = null;
  let step0Presents = null;
  const generated = [];
  for (let step = 0; generated.length < args.maxNew; step++) {
    const fresh = step === 0 ? tokens : tokens.slice(-1);
    const feeds = { input_ids: ids(fresh, args.mistake) };
    for (const name of pastNames) {
      if (step > 0) {
        const present = name.replace('past_key_values.', 'present.');
        // the right way keeps step 0's encoder cache; the mistake feeds back whatever came out
        const source = name.includes('.encoder.') && args.mistake !== 'every_present_fed_back' ? step0Presents : presents;
        feeds[name] = source[present];
        continue;
      }
      const [, kvHeads, , headDim] = metadata[name].shape;
      const heads = args.mistake === 'query_heads_in_past' ? config.num_attention_heads : kvHeads;
      feeds[name] = zeros([1, heads, args.mistake === 'zero_past_at_step0' ? 1 : 0, headDim]);
    }
    if (merged) {
      feeds.encoder_hidden_states = encoderHidden;
      feeds.encoder_attention_mask = ones(args.source.length);
      feeds.use_cache_branch = new ort.Tensor('bool', Uint8Array.from([step > 0 ? 1 : 0]), [1]);
    } else {
      feeds.attention_mask = ones(tokens.length);
      const first = args.mistake === 'positions_not_advanced' ? 0 : tokens.length - fresh.length;
      if (session.inputNames.includes('position_ids')) feeds.position_ids = int64(fresh.map((_, i) => first + i), [1, fresh.length]);
    }
    if (args.dump) dump(args.dump, step, feeds);
    const out = await session.run(feeds);
    presents = out;
    if (step === 0) step0Presents = out;
    generated.push(argmax(out.logits));
    tokens = [...tokens, generated[generated.length - 1]];
  }
  process.stdout.write(`${JSON.stringify(generated)}\n`);
}

main().catch((error) => {
  process.stderr.write(`naive_loop.js: ${String(error.message || error).split('\n')[0]}\n`);
  process.exit(1);
});
