// Solver choices: the solvers published with a model, and the classical ones the runtime builds
// itself (`Sampler.useClassical`), written "method:grid:nfe" (e.g. "dpmpp2m:edm:8"). What a
// classical method is (its stages, the grids it takes) is the runtime's `classicalMethods()`,
// recorded here when a sampler opens (sampler-client.js, sampler-session.js).

/** Classical solvers offered beside the published ones, at the published NFEs. */
const CLASSICAL = [
  ['euler', 'uniform'], ['midpoint', 'uniform'], ['heun', 'uniform'], ['rk4', 'uniform'],
  ['ab2', 'uniform'], ['ab3', 'uniform'], ['dpmpp2m', 'edm'], ['dpmpp2m', 'uniform'],
];

/** The runtime's classical methods by name: { name, stages, grids }. */
let methods = null;

/** Records the runtime's classical methods (`classicalMethods()`: [{ name, stages, grids }]). */
export function useClassicalMethods(list) {
  methods = new Map(list.map((method) => [method.name, method]));
}

/** The runtime's method `name`, or undefined when it has none of that name. */
function methodNamed(name) {
  if (!methods) throw new Error('the runtime\'s classical methods are not known yet: open a sampler first');
  return methods.get(name);
}

/** `{ method, grid, nfe }` for "method:grid:nfe", or null when `text` is not such a spec of a
 * method and grid the runtime has. */
export function parseClassical(text) {
  const match = /^([a-z0-9]+):([a-z0-9]+):(\d+)$/.exec(text.trim());
  if (!match || !methodNamed(match[1])?.grids.includes(match[2])) return null;
  return { method: match[1], grid: match[2], nfe: Number(match[3]) };
}

/** Whether `method` can take exactly `nfe` evaluations. */
export function fitsNfe(method, nfe) {
  const stages = methodNamed(method)?.stages;
  return stages > 0 && nfe > 0 && nfe % stages === 0;
}

/** The classical solvers at `nfe`, as "method:grid:nfe" specs. */
export function classicalAt(nfe) {
  return CLASSICAL.filter(([method, grid]) => methodNamed(method)?.grids.includes(grid) && fitsNfe(method, nfe))
    .map(([m, g]) => `${m}:${g}:${nfe}`);
}

/** A classical spec for people: "dpmpp2m, EDM grid, NFE 8". */
export function classicalLabel(spec) {
  const { method, grid, nfe } = parseClassical(spec);
  return `${method}, ${grid === 'edm' ? 'EDM' : 'uniform'} grid · NFE ${nfe}`;
}

/** A published solver (manifest entry) for people: "BNS · NFE 8 · w = 0 · 44.8 dB". */
export function publishedLabel(entry) {
  const kind = entry.kind === 'bns' ? 'BNS' : entry.kind;
  const psnr = Number.isFinite(entry.test_psnr) ? ` · ${entry.test_psnr.toFixed(1)} dB` : '';
  return `${kind} · NFE ${entry.nfe} · w = ${entry.guidance}${psnr}`;
}

/**
 * The solver to start with: BNS at NFE 8 when published (else the lowest NFE), guided (w > 0)
 * when the model is class-conditional (`spec.num_classes` > 0: without guidance its samples are
 * much less clear) and such a solver is published, else unguided; the first solver otherwise.
 */
export function defaultPublished(manifest, spec = null) {
  const bns = manifest.solvers.filter((s) => s.kind === 'bns');
  const guided = (s) => s.guidance > 0;
  const prefer = spec?.num_classes > 0 ? guided : (s) => !guided(s);
  const atEight = bns.filter((s) => s.nfe === 8);
  const lowest = [...bns].sort((a, b) => a.nfe - b.nfe);
  return (
    atEight.find(prefer) ?? atEight[0] ?? lowest.find(prefer) ?? lowest[0] ?? manifest.solvers[0] ?? null
  );
}

/** The NFEs of the published solvers, ascending (8 when none is published). */
export function publishedNfes(manifest) {
  const nfes = [...new Set(manifest.solvers.map((s) => s.nfe))].sort((a, b) => a - b);
  return nfes.length ? nfes : [8];
}
