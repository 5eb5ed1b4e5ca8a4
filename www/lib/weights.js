// Fetching a model's files. The weights (megabytes) go through the Cache API, so a revisit does
// not download them again; manifests and solvers (kilobytes) are fetched every time, so a
// republished model is noticed.

const CACHE_NAME = 'bns-models-v1';
const ID_PARAM = 'bns-model-id';

/** `fetch` that turns a network or HTTP error into an exception naming the URL and the file. */
export async function fetchOk(url, what) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`${url}: cannot load ${what} (${e.message})`);
  }
  if (!response.ok) throw new Error(`${url}: cannot load ${what} (HTTP ${response.status})`);
  return response;
}

/** The cache key of a weights file: its URL plus the model id, so a new model is a new entry. */
function cacheKey(url, modelId) {
  const key = new URL(url);
  key.searchParams.set(ID_PARAM, modelId);
  return key.href;
}

/**
 * The cache, or null where the Cache API is missing (insecure contexts such as plain http on a
 * host other than localhost) or refuses (storage disabled): then the weights are just fetched.
 */
async function openCache() {
  if (typeof caches === 'undefined') return null;
  try {
    return await caches.open(CACHE_NAME);
  } catch {
    return null;
  }
}

/** SHA-256 of `bytes` in hex (a model's id), or null where WebCrypto is missing (insecure contexts). */
async function sha256(bytes) {
  if (!globalThis.crypto?.subtle) return null;
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * The weights at `url` of the model the manifest names `modelId`, from the cache when present.
 * The bytes are checked against the id before use, so a damaged cache entry is replaced and a
 * half-published site is reported instead of failing later with a confusing solver error.
 * Resolves to `{ bytes, cached }` (`cached`: nothing was downloaded).
 */
export async function modelBytes(url, modelId) {
  const cache = await openCache();
  const key = cacheKey(url, modelId);
  const hit = await cache?.match(key).catch(() => undefined);
  if (hit) {
    const bytes = new Uint8Array(await hit.arrayBuffer());
    if ((await sha256(bytes)) === modelId) return { bytes, cached: true };
    await cache.delete(key).catch(() => {});
  }
  const bytes = new Uint8Array(await (await fetchOk(url, 'the model weights')).arrayBuffer());
  const id = await sha256(bytes);
  if (id !== null && id !== modelId) {
    throw new Error(
      `${url}: these weights are model ${id.slice(0, 12)}…, but the manifest names ` +
        `model ${String(modelId).slice(0, 12)}… (was the model published halfway?)`,
    );
  }
  if (cache) {
    // A full quota only costs the next visit a download.
    await cache.put(key, new Response(bytes)).catch(() => {});
    await dropOtherVersions(cache, url, key);
  }
  return { bytes, cached: false };
}

/**
 * A published model: its manifest at `manifestUrl` and its weights (through the cache), named
 * for errors by their URL. Where the manifest offers the model in half precision (`model_f16`,
 * FORMATS.md §1.8: half the download, the same solvers), that file is loaded, and each solver
 * entry's `test_psnr` becomes the one measured with those weights (`test_psnr_f16`), so that the
 * page shows what the loaded weights reach. Resolves to `{ manifest, url, bytes, cached, f16 }`
 * (`url`: the weights'; `f16`: the half-precision file was loaded).
 */
export async function fetchModel(manifestUrl) {
  const published = await (await fetchOk(manifestUrl, 'the model manifest')).json();
  const f16 = typeof published.model_f16 === 'string' && typeof published.model_f16_id === 'string';
  const manifest = f16 ? forHalfWeights(published) : published;
  const url = new URL(f16 ? manifest.model_f16 : manifest.model, manifestUrl).href;
  const { bytes, cached } = await modelBytes(url, f16 ? manifest.model_f16_id : manifest.model_id);
  return { manifest, url, bytes, cached, f16 };
}

/** The manifest with each solver's test PSNR measured with the half-precision weights. */
function forHalfWeights(manifest) {
  const solvers = manifest.solvers.map((entry) =>
    Number.isFinite(entry.test_psnr_f16) ? { ...entry, test_psnr: entry.test_psnr_f16 } : entry,
  );
  return { ...manifest, solvers };
}

/** Removes cached weights of `url` under another model id (the model was republished). */
async function dropOtherVersions(cache, url, keep) {
  const base = new URL(url).href;
  for (const request of await cache.keys().catch(() => [])) {
    const key = new URL(request.url);
    key.searchParams.delete(ID_PARAM);
    if (key.href === base && request.url !== keep) await cache.delete(request).catch(() => {});
  }
}
