// The spec object the page reads (the `ModelSpec` JSDoc typedef in www/lib/sampler-session.js),
// no browser needed: its properties are FORMATS.md's keys with their types, a spec the runtime
// writes holds only those properties with those types, and the page reads no other.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ARTIFACTS, BNS, ROOT, SITE } from './harness.mjs';

/** The typedefs of `file`: { name: [{ name, type, optional }] }, properties in their order. */
function typedefs(file) {
  const found = {};
  for (const [, block] of readFileSync(file, 'utf8').matchAll(/\/\*\*([\s\S]*?)\*\//g)) {
    const name = /@typedef \{object\} (\w+)/.exec(block)?.[1];
    if (!name) continue;
    found[name] = [...block.matchAll(/@property \{([^}]+)\} (\[?)(\w+)\]?/g)].map(([, type, bracket, property]) => ({
      name: property, type: type.trim(), optional: bracket === '[',
    }));
  }
  return found;
}

/** FORMATS.md's key table `name` (after `<!-- keys: name -->`): [{ key, type, required }]. */
function keyTable(name) {
  const text = readFileSync(join(ROOT, 'FORMATS.md'), 'utf8');
  const start = text.indexOf(`<!-- keys: ${name} -->`);
  assert.ok(start >= 0, `FORMATS.md has no key table ${name}`);
  const rows = [];
  for (const line of text.slice(start).split('\n').slice(3)) {
    if (!line.startsWith('|')) break;
    const [key, type, required] = line.split('|').slice(1, 4).map((cell) => cell.trim().replace(/`/g, ''));
    rows.push({ key, type, required });
  }
  return rows;
}

/** The JSDoc type of a FORMATS.md type (`object`: the typedef named by `nested`). */
function jsType(formatsType, nested) {
  if (formatsType === 'integer' || formatsType === 'number') return 'number';
  if (formatsType === 'boolean') return 'boolean';
  if (formatsType === 'object') return nested;
  if (/^\[integer(; \d+)?\]$/.test(formatsType)) return 'number[]';
  if (formatsType === '[string]') return 'string[]';
  return formatsType;
}

/** Whether `value` has the JSDoc type `type` (string literals and unions included). */
function hasType(value, type, defs) {
  const alternatives = type.split('|').map((t) => t.trim());
  return alternatives.some((t) => {
    if (t.startsWith("'")) return value === t.slice(1, -1);
    if (t.endsWith('[]')) return Array.isArray(value) && value.every((v) => hasType(v, t.slice(0, -2), defs));
    if (t in defs) return matches(value, defs[t], defs).length === 0;
    return typeof value === t;
  });
}

/** What is wrong with `value` as an object of the typedef `properties`. */
function matches(value, properties, defs) {
  const problems = [];
  const known = new Set(properties.map((p) => p.name));
  for (const key of Object.keys(value)) if (!known.has(key)) problems.push(`${key} is not documented`);
  for (const p of properties) {
    if (!(p.name in value)) {
      if (!p.optional) problems.push(`${p.name} is missing`);
    } else if (!hasType(value[p.name], p.type, defs)) {
      problems.push(`${p.name} = ${JSON.stringify(value[p.name])} is not ${p.type}`);
    }
  }
  return problems;
}

/** The `bns.model` object of a model file. */
function specOf(file) {
  const bytes = readFileSync(file);
  const length = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + length).toString('utf8'));
  return JSON.parse(header.__metadata__['bns.model']);
}

const DEFS = typedefs(join(SITE, 'lib/sampler-session.js'));

test('the ModelSpec typedef lists FORMATS.md\'s keys in order, with their types', () => {
  for (const [typedef, table, nested] of [['ModelSpec', 'bns.model', 'UnetSizes'], ['UnetSizes', 'unet', null]]) {
    const properties = DEFS[typedef];
    assert.ok(properties, `no typedef ${typedef}`);
    const rows = keyTable(table);
    assert.deepEqual(properties.map((p) => p.name), rows.map((r) => r.key), typedef);
    for (const [i, row] of rows.entries()) {
      const property = properties[i];
      const expected = jsType(row.type, nested);
      const literals = property.type.split('|').map((t) => t.trim());
      // A string key may be documented as the union of its allowed values.
      const fits = property.type === expected || (expected === 'string' && literals.every((t) => t.startsWith("'")));
      assert.ok(fits, `${typedef}.${row.key}: FORMATS.md says ${row.type}, the typedef ${property.type}`);
      // A key every model has is never optional; one only an architecture has always is.
      if (row.required === 'yes') assert.equal(property.optional, false, `${typedef}.${row.key} is required`);
      if (row.required === 'mlp' || row.required === 'unet') assert.equal(property.optional, true, `${typedef}.${row.key}`);
    }
  }
});

test('the specs the runtime writes are ModelSpecs', () => {
  const files = [];
  for (const name of readdirSync(join(SITE, 'models'))) {
    const folder = join(SITE, 'models', name);
    if (!statSync(folder).isDirectory()) continue;
    files.push(...readdirSync(folder).filter((f) => f.endsWith('.safetensors')).map((f) => join(folder, f)));
  }
  assert.ok(files.length > 0, 'no published model');
  // A U-Net too (every published model is an MLP), written by the same runtime.
  assert.ok(existsSync(BNS), `${BNS} not found: build it with 'cargo build -p distiller'`);
  mkdirSync(ARTIFACTS, { recursive: true });
  const unet = join(ARTIFACTS, 'model-spec-unet.safetensors');
  execFileSync(BNS, ['model', 'init', '--arch', 'unet', '--shape', '1,8,8', '--base-channels', '4',
    '--channel-multipliers', '1,2', '--groups', '2', '--embedding-width', '8', '-o', unet]);
  files.push(unet);
  for (const file of files) {
    assert.deepEqual(matches(specOf(file), DEFS.ModelSpec, DEFS), [], file);
  }
});

test('the page reads only documented spec properties', () => {
  const documented = new Set(DEFS.ModelSpec.map((p) => p.name));
  const read = new Set();
  const pending = [SITE];
  while (pending.length) {
    const path = pending.pop();
    if (statSync(path).isDirectory()) {
      if (!path.endsWith('/pkg') && !path.endsWith('/models')) pending.push(...readdirSync(path).map((f) => join(path, f)));
    } else if (path.endsWith('.js')) {
      for (const [, property] of readFileSync(path, 'utf8').matchAll(/(?<![\w-])spec\??\.(\w+)/g)) read.add(property);
    }
  }
  assert.ok(read.has('data_shape') && read.has('num_classes'), [...read].join(', '));
  for (const property of read) assert.ok(documented.has(property), `the page reads spec.${property}, which ModelSpec does not document`);
});
