// Browser benchmark of `shaders/conv2d.wgsl` alone (not a test): WebGPU in headless Chromium
// (SwiftShader with --enable-unsafe-webgpu), no wasm build needed.
//
//   node tests/browser/conv-bench.mjs [--rows 8] [--runs 3] [OTHER.wgsl …]
//
// Each kernel runs the 3×3 convolutions of one forward of the default-size U-Net of
// `bns model init --arch unet` (1×28×28, base 32 × [1, 2, 2], 1 block per level, attention) on
// `--rows` rows of random values, all in one submission, waited for with onSubmittedWorkDone;
// the kernels take turns, run after run (after a warm-up), and each prints the median, its
// compile time (shader module and pipeline) and its largest difference from the first kernel's
// output relative to that output's largest value. OTHER.wgsl files are other forms of the
// kernel to compare (e.g. an older one, `git show REV:shaders/conv2d.wgsl > old.wgsl`): the same
// bindings and `Conv2dParams`, their workgroup's block read from their constants
// `BLOCK_POSITIONS` and `BLOCK_OUTPUTS` (or `BLOCK` for both).

import { readFileSync } from 'node:fs';
import { startServer } from '../../www/serve.mjs';
import { launch } from './chromium.mjs';

const WWW = new URL('../../www/', import.meta.url).pathname;
const SHADER = new URL('../../shaders/conv2d.wgsl', import.meta.url).pathname;

// [inputs, outputs, kernel, stride, height, width] of each 3×3 convolution, as they run: the
// input convolution, the way down (two per residual block, a stride-2 one between levels), the
// two middle blocks, the way up (inputs concatenated with the skips, a convolution after each
// ×2 upsampling) and the output convolution.
const LAYERS = [
  [1, 32, 3, 1, 28, 28], [32, 32, 3, 1, 28, 28], [32, 32, 3, 1, 28, 28], [32, 32, 3, 2, 28, 28],
  [32, 64, 3, 1, 14, 14], [64, 64, 3, 1, 14, 14], [64, 64, 3, 2, 14, 14],
  [64, 64, 3, 1, 7, 7], [64, 64, 3, 1, 7, 7],
  [64, 64, 3, 1, 7, 7], [64, 64, 3, 1, 7, 7], [64, 64, 3, 1, 7, 7], [64, 64, 3, 1, 7, 7],
  [128, 64, 3, 1, 7, 7], [64, 64, 3, 1, 7, 7], [64, 64, 3, 1, 14, 14],
  [128, 64, 3, 1, 14, 14], [64, 64, 3, 1, 14, 14], [64, 64, 3, 1, 28, 28],
  [96, 32, 3, 1, 28, 28], [32, 32, 3, 1, 28, 28], [32, 1, 3, 1, 28, 28],
];

function usage(problem) {
  console.error(`conv-bench.mjs: ${problem}\n` +
    'usage: node tests/browser/conv-bench.mjs [--rows N] [--runs N] [OTHER.wgsl …]');
  process.exit(2);
}

const args = process.argv.slice(2);
const options = { rows: 8, runs: 3 };
const files = [SHADER];
while (args.length) {
  const arg = args.shift();
  if (arg === '--rows' || arg === '--runs') {
    const value = Number(args.shift());
    if (!Number.isInteger(value) || value < 1) usage(`${arg} needs a positive integer`);
    options[arg.slice(2)] = value;
  } else if (arg.startsWith('--')) {
    usage(`unknown option ${arg}`);
  } else {
    files.push(arg);
  }
}

/** A kernel to time: its source and the block its dispatch is sized for. */
function kernel(file) {
  const code = readFileSync(file, 'utf8');
  const constant = (name) => {
    const found = code.match(new RegExp(`const ${name}: u32 = (\\d+)u;`));
    return found ? Number(found[1]) : undefined;
  };
  const positions = constant('BLOCK_POSITIONS') ?? constant('BLOCK');
  const outputs = constant('BLOCK_OUTPUTS') ?? constant('BLOCK');
  if (!positions || !outputs) usage(`${file}: no BLOCK_POSITIONS and BLOCK_OUTPUTS, nor BLOCK`);
  return { name: file, code, positions, outputs };
}

/** Runs in the page: compiles each kernel, checks it against the first, times them in turns. */
async function timeKernels({ kernels, layers, rows, runs }) {
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter');
  const device = await adapter.requestDevice();
  let seed = 1;
  const random = (n) => {
    const values = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      values[i] = seed / 2 ** 31 - 1;
    }
    return values;
  };
  const buffer = (data, usage) => {
    const b = device.createBuffer({ size: Math.max(16, data.byteLength), usage: usage | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(b, 0, data);
    return b;
  };
  const convs = layers.map(([inputs, outputs, k, stride, h, w]) => {
    const [oh, ow] = [Math.ceil(h / stride), Math.ceil(w / stride)];
    const storage = GPUBufferUsage.STORAGE;
    return {
      outputs, positions: rows * oh * ow,
      bindings: [
        buffer(new Uint32Array([rows, inputs, outputs, h, w, oh, ow, k, stride, 0, 0, 0]), GPUBufferUsage.UNIFORM),
        buffer(random(rows * h * w * inputs), storage),
        buffer(random(outputs * inputs * k * k), storage),
        buffer(random(outputs), storage),
        device.createBuffer({ size: 4 * rows * oh * ow * outputs, usage: storage | GPUBufferUsage.COPY_SRC }),
      ],
    };
  });
  const compiled = [];
  for (const k of kernels) {
    const start = performance.now();
    const module = device.createShaderModule({ code: k.code });
    const pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
    const compileMs = performance.now() - start;
    const groups = convs.map((c) => device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: c.bindings.map((b, binding) => ({ binding, resource: { buffer: b } })),
    }));
    compiled.push({ ...k, pipeline, groups, compileMs, times: [] });
  }
  const forward = async (k) => {
    const start = performance.now();
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(k.pipeline);
    convs.forEach((c, i) => {
      pass.setBindGroup(0, k.groups[i]);
      pass.dispatchWorkgroups(Math.ceil(c.outputs / k.outputs), Math.ceil(c.positions / k.positions), 1);
    });
    pass.end();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    return performance.now() - start;
  };
  // The output of the largest convolution (the 64 → 64 one at 28×28), read back.
  const read = async () => {
    const y = convs[convs.length - 4].bindings[4];
    const copy = device.createBuffer({ size: y.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(y, 0, copy, 0, y.size);
    device.queue.submit([encoder.finish()]);
    await copy.mapAsync(GPUMapMode.READ);
    const values = new Float32Array(copy.getMappedRange().slice(0));
    copy.unmap();
    return values;
  };
  const outputs = [];
  for (const k of compiled) {
    await forward(k); // the warm-up
    outputs.push(await read());
  }
  const scale = outputs[0].reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  for (let run = 0; run < runs; run++) {
    for (const k of compiled) k.times.push(await forward(k));
  }
  const info = adapter.info ?? {};
  return {
    adapter: [info.vendor, info.architecture, info.description].filter(Boolean).join(' '),
    results: compiled.map((k, i) => ({
      name: k.name, times: k.times, compileMs: k.compileMs,
      error: outputs[i].reduce((m, v, j) => Math.max(m, Math.abs(v - outputs[0][j])), 0) / scale,
    })),
  };
}

const kernels = files.map(kernel);
const multiplyAdds = LAYERS.reduce((sum, [inputs, outputs, k, stride, h, w]) =>
  sum + options.rows * Math.ceil(h / stride) * Math.ceil(w / stride) * outputs * inputs * k * k, 0);
const server = await startServer({ root: WWW });
const browser = await launch({ webgpu: true });
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/about.js`);
  const { adapter, results } = await page.evaluate(
    `(${timeKernels})(${JSON.stringify({ kernels, layers: LAYERS, rows: options.rows, runs: options.runs })})`);
  console.log(`conv2d, ${LAYERS.length} 3×3 convolutions of the default U-Net at ${options.rows} rows ` +
    `(${(multiplyAdds * 1e-9).toFixed(2)} G multiply-adds), Chromium ${browser.version()} headless, ` +
    `WebGPU on ${adapter}; ${options.runs} runs after a warm-up, in turns:`);
  for (const r of results) {
    const sorted = [...r.times].sort((a, b) => a - b);
    const median = sorted[sorted.length >> 1];
    console.log(`  ${r.name}: median ${median.toFixed(0)} ms (${r.times.map((t) => t.toFixed(0)).join(', ')}), ` +
      `compiled in ${r.compileMs.toFixed(0)} ms, max |Δ| / max |first| = ${r.error.toExponential(1)}`);
  }
} finally {
  await browser.close();
  server.close();
}
