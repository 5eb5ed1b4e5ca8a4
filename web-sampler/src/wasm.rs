//! The JavaScript API (wasm-bindgen): JS values converted to the runtime's types and back, over
//! [`crate::sampler::Sampler`], which holds the logic (the GPU or the CPU path, the fallback, the
//! last samples and their picture).
//!
//! ```js
//! import init, { Sampler } from './pkg/web_sampler.js';
//! await init();
//! const s = await Sampler.create();           // WebGPU when the browser has it, else the CPU
//! s.loadModel(bytes, "model.safetensors");
//! s.loadSolver(jsonText, "bns-8.json");
//! const { values, backend, picture } = await s.generate({ seed: 1, batch: 16 });
//! // values: Float32Array [B, C, H, W]; backend: "webgpu" or "cpu", the path that ran;
//! // picture: { rgba, width, height } of images, in `columns` tiles per row
//! await s.generate({ seed: 1, batch: 16 }, (done, total) => bar.value = done / total);
//!
//! // A BNS solver learned from the model alone (in a worker: each call is one small piece).
//! const d = new Distiller(bytes, "model.safetensors", { nfe: 8, train: 256, validation: 128, iterations: 250 });
//! while (!d.finished()) report(d.advance());   // ground truth, baselines, then iterations
//! s.loadSolver(d.solverJson(seconds), "mine.json");
//! ```

use std::rc::Rc;

use serde::Deserialize;
use wasm_bindgen::prelude::*;

use crate::error::number_in_message;
use crate::grid::Grid;
use crate::model::Model;
use crate::sample::{is_image, SampleRequest, MAX_BATCH, MAX_ROW};
use crate::sampler::{self, default_columns, Backend, BackendChoice};
use crate::solver::{Method, SolverFile};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
/** Options of `Sampler.create`. */
export interface CreateOptions {
  /** Try WebGPU (default true); false always uses the CPU path. */
  gpu?: boolean;
}
/** Options of `Sampler.generate` and `Sampler.trajectories`. */
export interface GenerateOptions {
  /** Seed of the initial noise: an integer in [0, 2^53). */
  seed: number;
  /** Number of samples, 1 to 1024. */
  batch: number;
  /** Class of every sample; omitted, null or negative cycles through the classes. */
  class?: number | null;
  /** Guidance scale w ≥ 0 (default 0). */
  guidance?: number;
  /** Tiles per row of the picture (default ceil(√batch)). */
  columns?: number;
  /** "auto" (default: WebGPU when available, except on a software renderer's adapter such as
   * SwiftShader, which is slower than the CPU path), "cpu", or "webgpu" (the GPU only, even a
   * software renderer: its failure is the call's error, and the sampler keeps the GPU). */
  backend?: "auto" | "cpu" | "webgpu";
  /** The index of the first sample (default 0): `batch` samples from this row of the seed's
   * samples, each the same as in a whole batch (for sharing a batch between workers), 0 to 1023. */
  firstRow?: number;
}
/** Which path runs `generate`. */
export type Backend = "webgpu" | "cpu";
/** What `Sampler.generate` made. */
export interface Generated {
  /** The samples [B, C, H, W] (images in [−1, 1]). */
  values: Float32Array;
  /** The path that ran them. */
  backend: Backend;
  /** Images: the samples as a grid of `columns` tiles per row (RGBA8, `width` × `height`);
   * null for samples that are not images (2-D points). */
  picture: { rgba: Uint8Array; width: number; height: number } | null;
}
/** A classical method the runtime builds (`Sampler.useClassical`). */
export interface ClassicalMethod {
  /** Its name, e.g. "rk4". */
  name: string;
  /** Network evaluations per grid step: an NFE must be a multiple of it. */
  stages: number;
  /** The grids it can be built on, e.g. ["uniform", "edm"]. */
  grids: string[];
}
"#;

fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// Version of the runtime.
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}

/// The classical methods the runtime can build (`Sampler.useClassical`), in the order the UI
/// lists them: `[{ name, stages, grids }]`.
#[wasm_bindgen(js_name = classicalMethods, unchecked_return_type = "ClassicalMethod[]")]
pub fn classical_methods() -> JsValue {
    let methods = js_sys::Array::new();
    for method in Method::ALL {
        let grids: js_sys::Array = Grid::ALL.iter().map(|g| JsValue::from(g.name())).collect();
        methods.push(&object(&[
            ("name", method.name().into()),
            ("stages", (method.stages() as f64).into()),
            ("grids", grids.into()),
        ]));
    }
    methods.into()
}

/// A plain JavaScript object with these fields.
fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let object = js_sys::Object::new();
    for (name, value) in fields {
        // Setting a field of a new plain object cannot fail.
        let _ = js_sys::Reflect::set(&object, &JsValue::from(*name), value);
    }
    object.into()
}

/// The picture of image samples `values` `[B, C, H, W]` (`shape`, C = 1 or 3, values in
/// [−1, 1]) in `columns` tiles per row, as `Sampler.generate` draws it on the CPU path.
#[wasm_bindgen(js_name = gridPicture, unchecked_return_type = "{ rgba: Uint8Array; width: number; height: number }")]
pub fn grid_picture(values: Vec<f32>, shape: Vec<f64>, columns: f64) -> Result<JsValue, JsError> {
    let dims: Vec<usize> = shape
        .iter()
        .map(|&n| whole("shape", n, 1.0, 1e9).map(|n| n as usize))
        .collect::<Result<_, _>>()?;
    let [b, c, h, w] = dims[..] else {
        return Err(JsError::new(&format!(
            "gridPicture: the shape must be [B, C, H, W], got {} numbers",
            dims.len()
        )));
    };
    let count = [b, c, h, w]
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d));
    if count != Some(values.len()) {
        return Err(JsError::new(&format!(
            "gridPicture: {} values are not a batch of shape {dims:?}",
            values.len()
        )));
    }
    let columns = whole("columns", columns, 1.0, MAX_BATCH as f64)? as usize;
    let samples = crate::sample::Samples {
        values,
        shape: [b, c, h, w],
    };
    let picture = crate::sample::grid_picture(&samples, columns).map_err(js_error)?;
    Ok(object(&[
        ("rgba", js_sys::Uint8Array::from(&picture.rgba[..]).into()),
        ("width", (picture.width as f64).into()),
        ("height", (picture.height as f64).into()),
    ]))
}

/// PSNR in dB of each sample of `x` against `reference` (both `[N, dim]`, values in [−1, 1]).
#[wasm_bindgen]
pub fn psnr(x: &[f32], reference: &[f32], dim: usize) -> Result<Vec<f64>, JsError> {
    if dim == 0 || x.len() != reference.len() || !x.len().is_multiple_of(dim) {
        return Err(JsError::new(&format!(
            "psnr: {} and {} values are not both whole samples of {dim}",
            x.len(),
            reference.len()
        )));
    }
    Ok(crate::metrics::psnr(x, reference, dim))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateOptions {
    #[serde(default)]
    gpu: Option<bool>,
}

/// `generate`'s options as JavaScript gives them: every number a double, checked by
/// [`GenerateOptions::parse`] so that a wrong value is named in words, never in serde's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGenerateOptions {
    seed: f64,
    batch: f64,
    #[serde(default)]
    class: Option<f64>,
    #[serde(default)]
    guidance: f64,
    #[serde(default)]
    columns: Option<f64>,
    #[serde(default)]
    backend: Option<String>,
    #[serde(default, rename = "firstRow")]
    first_row: Option<f64>,
}

/// The checked options of `generate`.
struct GenerateOptions {
    seed: u64,
    batch: usize,
    class: Option<u32>,
    guidance: f64,
    columns: Option<usize>,
    backend: Option<String>,
    first_row: usize,
}

/// `value` as a whole number in `min..=max`, or an error naming `name`.
fn whole(name: &str, value: f64, min: f64, max: f64) -> Result<f64, JsError> {
    if value.is_finite() && value.fract() == 0.0 && (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(JsError::new(&format!(
            "{name} must be a whole number from {min} to {max}, got {}",
            number_in_message(value)
        )))
    }
}

impl GenerateOptions {
    fn parse(value: JsValue) -> Result<GenerateOptions, JsError> {
        let raw: RawGenerateOptions = serde_wasm_bindgen::from_value(value).map_err(|e| {
            JsError::new(&format!(
                "generate options must be {{seed, batch, class?, guidance?, columns?, backend?, \
                 firstRow?}} with numbers and a backend name ({e})"
            ))
        })?;
        let seed = whole("seed", raw.seed, 0.0, 9_007_199_254_740_991.0)? as u64;
        let batch = whole("batch", raw.batch, 1.0, MAX_BATCH as f64)? as usize;
        // A negative class means none (the widget's "any class").
        let class = match raw.class {
            Some(c) if c < 0.0 && c.is_finite() => None,
            Some(c) => Some(whole("class", c, 0.0, f64::from(u32::MAX))? as u32),
            None => None,
        };
        if !(raw.guidance.is_finite() && raw.guidance >= 0.0) {
            return Err(JsError::new(&format!(
                "guidance must be a finite number ≥ 0, got {}",
                number_in_message(raw.guidance)
            )));
        }
        let columns = match raw.columns {
            Some(c) => Some(whole("columns", c, 1.0, MAX_BATCH as f64)? as usize),
            None => None,
        };
        if let Some(b) = raw.backend.as_deref() {
            if b != "auto" && b != "cpu" && b != "webgpu" {
                return Err(JsError::new(&format!(
                    "backend must be \"auto\", \"cpu\" or \"webgpu\", got {b:?}"
                )));
            }
        }
        let first_row = match raw.first_row {
            Some(r) => whole("firstRow", r, 0.0, MAX_ROW as f64)? as usize,
            None => 0,
        };
        Ok(GenerateOptions {
            seed,
            batch,
            class,
            guidance: raw.guidance,
            columns,
            backend: raw.backend,
            first_row,
        })
    }

    fn request(&self) -> SampleRequest {
        SampleRequest {
            seed: self.seed,
            batch: self.batch,
            class: self.class,
            guidance: self.guidance,
            first_row: self.first_row,
        }
    }

    fn columns(&self) -> usize {
        self.columns
            .unwrap_or_else(|| default_columns(self.batch))
            .max(1)
    }

    fn backend(&self) -> BackendChoice {
        match self.backend.as_deref() {
            Some("cpu") => BackendChoice::Cpu,
            Some("webgpu") => BackendChoice::Gpu,
            _ => BackendChoice::Auto,
        }
    }
}

/// A model and a solver, ready to generate on WebGPU or the CPU.
#[wasm_bindgen]
pub struct Sampler {
    sampler: Rc<sampler::Sampler>,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::new()
    }
}

#[wasm_bindgen]
impl Sampler {
    /// A sampler on the CPU path only (`Sampler.create()` also tries WebGPU).
    #[wasm_bindgen(constructor)]
    pub fn new() -> Sampler {
        Sampler::wrap(sampler::Sampler::new())
    }

    /// A sampler on WebGPU when the browser offers an adapter, else on the CPU path
    /// (`backendNote()` says why).
    pub async fn create(
        #[wasm_bindgen(unchecked_optional_param_type = "CreateOptions")] options: JsValue,
    ) -> Result<Sampler, JsError> {
        let options: CreateOptions = if options.is_undefined() || options.is_null() {
            CreateOptions::default()
        } else {
            serde_wasm_bindgen::from_value(options)
                .map_err(|e| JsError::new(&format!("create options: {e}")))?
        };
        if options.gpu == Some(false) {
            return Ok(Sampler::new());
        }
        Ok(Sampler::wrap(sampler::Sampler::create().await))
    }

    fn wrap(sampler: sampler::Sampler) -> Sampler {
        Sampler {
            sampler: Rc::new(sampler),
        }
    }

    /// Which path the next `generate` uses: "webgpu" or "cpu".
    #[wasm_bindgen(unchecked_return_type = "Backend")]
    pub fn backend(&self) -> String {
        match self.sampler.backend() {
            Backend::Gpu => "webgpu".into(),
            Backend::Cpu => "cpu".into(),
        }
    }

    /// Why the CPU path is in use ("" on WebGPU), e.g. "WebGPU is not available (…)".
    #[wasm_bindgen(js_name = backendNote)]
    pub fn backend_note(&self) -> String {
        self.sampler.backend_note()
    }

    /// The GPU adapter in use, if any, e.g. "swiftshader (google) (BrowserWebGpu)".
    pub fn adapter(&self) -> Option<String> {
        self.sampler.adapter()
    }

    /// The software renderer behind the GPU adapter ("SwiftShader"), if it is one: then "auto"
    /// takes the CPU path (`backendNote()` says so) and "webgpu" still uses it.
    #[wasm_bindgen(js_name = softwareRenderer)]
    pub fn software_renderer(&self) -> Option<String> {
        self.sampler.software_renderer()
    }

    /// Destroys the GPU device, as a driver reset would: the next `generate` falls back to
    /// the CPU path. For tests of that fallback.
    #[wasm_bindgen(js_name = loseDevice)]
    pub fn lose_device(&self) {
        self.sampler.lose_device();
    }

    /// Loads a model file; `name` names it in errors. Returns the model's spec as JSON text.
    #[wasm_bindgen(js_name = loadModel)]
    pub fn load_model(&self, bytes: &[u8], name: &str) -> Result<String, JsError> {
        let model = Model::from_bytes(bytes, name).map_err(js_error)?;
        let spec = serde_json::to_string(model.spec()).map_err(js_error)?;
        self.sampler.set_model(model);
        Ok(spec)
    }

    /// The loaded model's architecture and sizes for people, e.g. `"mlp: depth 3, width 512,
    /// silu"`.
    #[wasm_bindgen(js_name = modelSummary)]
    pub fn model_summary(&self) -> Option<String> {
        self.sampler.model().map(|m| {
            let architecture = &m.spec().architecture;
            format!("{architecture}: {}", architecture.summary())
        })
    }

    /// The loaded model's id (SHA-256 of its file).
    #[wasm_bindgen(js_name = modelId)]
    pub fn model_id(&self) -> Option<String> {
        self.sampler.model().map(|m| m.id().to_string())
    }

    /// Loads a solver file; refused if it was distilled for another model than the loaded one.
    #[wasm_bindgen(js_name = loadSolver)]
    pub fn load_solver(&self, json: &str, name: &str) -> Result<(), JsError> {
        let file = SolverFile::from_json(json, name).map_err(js_error)?;
        self.sampler.load_solver(file, name).map_err(js_error)
    }

    /// Uses a classical solver built by the runtime (`method` from `classicalMethods()`,
    /// `grid` "uniform" or "edm").
    #[wasm_bindgen(js_name = useClassical)]
    pub fn use_classical(&self, method: &str, grid: &str, nfe: usize) -> Result<(), JsError> {
        let method: Method = method.parse().map_err(|e: String| JsError::new(&e))?;
        let grid: Grid = grid.parse().map_err(|e: String| JsError::new(&e))?;
        self.sampler
            .use_classical(method, grid, nfe)
            .map_err(js_error)
    }

    /// The loaded solver file as JSON text.
    #[wasm_bindgen(js_name = solverJson)]
    pub fn solver_json(&self) -> Option<String> {
        self.sampler.solver_file().map(|f| f.to_json())
    }

    /// Generates samples (see `GenerateOptions`); resolves to `Generated`: the samples as a
    /// Float32Array `[B, C, H, W]` (images in [−1, 1]), the path that ran them, and for images
    /// their picture in `columns` tiles per row (on WebGPU drawn on the GPU too). If the GPU
    /// fails or its device is lost, this call and the next ones run on the CPU path. `onProgress(done,
    /// total)`, if given, hears how many of the solver's evaluations are done: after each on
    /// the CPU path (called from inside this call, which the CPU path runs without yielding:
    /// run it in a worker to see them), at the start and the end on WebGPU.
    #[wasm_bindgen(unchecked_return_type = "Promise<Generated>")]
    pub fn generate(
        &self,
        #[wasm_bindgen(unchecked_param_type = "GenerateOptions")] options: JsValue,
        #[wasm_bindgen(unchecked_param_type = "(done: number, total: number) => void")]
        on_progress: Option<js_sys::Function>,
    ) -> js_sys::Promise {
        let sampler = Rc::clone(&self.sampler);
        let options = GenerateOptions::parse(options);
        wasm_bindgen_futures::future_to_promise(async move {
            let options = options?;
            let mut progress = |done: usize, total: usize| {
                if let Some(f) = &on_progress {
                    // A throwing callback does not stop the solve.
                    let _ = f.call2(
                        &JsValue::NULL,
                        &(done as f64).into(),
                        &(total as f64).into(),
                    );
                }
            };
            let columns = options.columns();
            let generated = sampler
                .generate_with_progress(
                    &options.request(),
                    columns,
                    options.backend(),
                    &mut progress,
                )
                .await
                .map_err(js_error)?;
            let picture = if is_image(&generated.samples.shape[1..]) {
                let picture = generated.picture(columns).map_err(js_error)?;
                object(&[
                    ("rgba", js_sys::Uint8Array::from(&picture.rgba[..]).into()),
                    ("width", (picture.width as f64).into()),
                    ("height", (picture.height as f64).into()),
                ])
            } else {
                JsValue::NULL
            };
            let backend = match generated.backend {
                Backend::Gpu => "webgpu",
                Backend::Cpu => "cpu",
            };
            Ok(object(&[
                (
                    "values",
                    js_sys::Float32Array::from(&generated.samples.values[..]).into(),
                ),
                ("backend", backend.into()),
                ("picture", picture),
            ]))
        })
    }

    /// The states x_0, …, x_n of a solve on the CPU path, as a Float32Array `[n+1, B, D]`
    /// (for drawing the trajectories of 2-D models).
    pub fn trajectories(
        &self,
        #[wasm_bindgen(unchecked_param_type = "GenerateOptions")] options: JsValue,
    ) -> Result<Vec<f32>, JsError> {
        let options = GenerateOptions::parse(options)?;
        let states = self
            .sampler
            .trajectories(&options.request())
            .map_err(js_error)?;
        Ok(states.concat())
    }
}

/// `Distiller`'s options as JavaScript gives them (every number a double, checked in words).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDistillOptions {
    nfe: f64,
    #[serde(default)]
    guidance: f64,
    train: f64,
    validation: f64,
    iterations: f64,
    #[serde(default)]
    batch: Option<f64>,
    #[serde(default)]
    lr: Option<f64>,
    #[serde(default)]
    validate_every: Option<f64>,
    #[serde(default)]
    seed: Option<f64>,
}

impl RawDistillOptions {
    fn settings(self) -> Result<crate::bns::JobSettings, JsError> {
        let defaults = crate::bns::DistillationSettings::new(1, 0.0);
        let count = |name: &str, v: f64| -> Result<usize, JsError> {
            Ok(whole(name, v, 1.0, crate::bns::job::MAX_PAIRS as f64)? as usize)
        };
        let lr = self.lr.unwrap_or(defaults.lr);
        if !(lr.is_finite() && lr > 0.0 && lr <= 1.0) {
            return Err(JsError::new(&format!(
                "lr must be a number in (0, 1], got {}",
                number_in_message(lr)
            )));
        }
        Ok(crate::bns::JobSettings {
            nfe: whole("nfe", self.nfe, 1.0, crate::solver::MAX_STEPS as f64)? as usize,
            guidance: self.guidance,
            train: count("train", self.train)?,
            validation: count("validation", self.validation)?,
            iterations: whole(
                "iterations",
                self.iterations,
                1.0,
                crate::bns::job::MAX_ITERATIONS as f64,
            )? as usize,
            batch: count("batch", self.batch.unwrap_or(defaults.batch as f64))?,
            lr,
            validate_every: count(
                "validateEvery",
                self.validate_every
                    .unwrap_or(defaults.validate_every as f64),
            )?,
            seed: whole(
                "seed",
                self.seed.unwrap_or(0.0),
                0.0,
                9_007_199_254_740_991.0,
            )? as u64,
        })
    }
}

#[wasm_bindgen(typescript_custom_section)]
const DISTILL_TYPES: &str = r#"
/** Options of `new Distiller`. */
export interface DistillOptions {
  /** Network evaluations of the solver. */
  nfe: number;
  /** Guidance scale w ≥ 0 (default 0). */
  guidance?: number;
  /** Training and validation pairs (together a multiple of 64). */
  train: number;
  validation: number;
  /** Adam iterations. */
  iterations: number;
  /** Training pairs per iteration (default 40), peak learning rate (default 5e-3), validation
   * every this many iterations (default 50), seed of the noise (default 0). */
  batch?: number;
  lr?: number;
  validateEvery?: number;
  seed?: number;
}
/** What one `Distiller.advance()` did. */
export type DistillStep =
  | { stage: "truth"; done: number; total: number; nfe: number }
  | { stage: "baselines"; baselines: { label: string; psnr: number }[]; init: { label: string; psnr: number } }
  | { stage: "iteration"; iteration: number; trainPsnr: number; validationPsnr: number | null; bestPsnr: number; done: boolean };
"#;

/// A BNS distillation for one model, advanced a piece at a time by its caller (the page's
/// worker), which can report each piece and stop between them (`crate::bns::job`).
#[wasm_bindgen]
pub struct Distiller {
    job: crate::bns::DistillJob,
}

#[wasm_bindgen]
impl Distiller {
    /// Reads the model file (`name` names it in errors) and checks the options against it.
    #[wasm_bindgen(constructor)]
    pub fn new(
        bytes: &[u8],
        name: &str,
        #[wasm_bindgen(unchecked_param_type = "DistillOptions")] options: JsValue,
    ) -> Result<Distiller, JsError> {
        let model = Model::from_bytes(bytes, name).map_err(js_error)?;
        let raw: RawDistillOptions = serde_wasm_bindgen::from_value(options).map_err(|e| {
            JsError::new(&format!(
                "distillation options must be {{nfe, guidance?, train, validation, iterations, \
                 batch?, lr?, validateEvery?, seed?}}: {e}"
            ))
        })?;
        let job = crate::bns::DistillJob::new(&model, raw.settings()?).map_err(js_error)?;
        Ok(Distiller { job })
    }

    /// One piece of work: a batch of ground truth, the baselines, or one iteration.
    #[wasm_bindgen(unchecked_return_type = "DistillStep")]
    pub fn advance(&mut self) -> Result<JsValue, JsError> {
        use crate::bns::Advance;
        let value = match self.job.advance().map_err(js_error)? {
            Advance::Truth { done, total, nfe } => serde_json::json!({
                "stage": "truth", "done": done, "total": total, "nfe": nfe,
            }),
            Advance::Baselines => {
                let baselines: Vec<_> = self
                    .job
                    .baselines()
                    .iter()
                    .map(|(label, psnr)| serde_json::json!({ "label": label, "psnr": psnr }))
                    .collect();
                let (label, psnr) = self.job.init().unwrap_or_default();
                serde_json::json!({
                    "stage": "baselines",
                    "baselines": baselines,
                    "init": { "label": label, "psnr": psnr },
                })
            }
            Advance::Iteration(it) => serde_json::json!({
                "stage": "iteration",
                "iteration": it.iteration,
                "trainPsnr": it.train_psnr,
                "validationPsnr": it.validation_psnr,
                "bestPsnr": it.best_validation_psnr,
                "done": self.job.finished(),
            }),
        };
        serde::Serialize::serialize(&value, &serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(js_error)
    }

    /// Whether every iteration is done.
    pub fn finished(&self) -> bool {
        self.job.finished()
    }

    /// The best solver so far as a solver file (JSON text) bound to the model, recording
    /// `seconds` of work; `undefined` before training starts.
    #[wasm_bindgen(js_name = solverJson)]
    pub fn solver_json(&self, seconds: f64) -> Option<String> {
        Some(self.job.solver_file(seconds)?.to_json())
    }

    /// The `bns truth` command whose pairs begin with this distillation's, with `test` more.
    #[wasm_bindgen(js_name = truthCommand)]
    pub fn truth_command(&self, test: usize) -> String {
        self.job.settings().truth_command(test)
    }
}
