//! The JavaScript API (wasm-bindgen): a thin layer over the runtime, holding no logic of its own.
//!
//! ```js
//! import init, { Sampler } from './pkg/web_sampler.js';
//! await init();
//! const s = await Sampler.create();           // WebGPU when the browser has it, else the CPU
//! s.loadModel(bytes, "model.safetensors");
//! s.loadSolver(jsonText, "bns-8.json");
//! const values = await s.generate({ seed: 1, batch: 16 });  // Float32Array [B, C, H, W]
//! s.backend();                                 // "webgpu" or "cpu"
//! ```

use std::cell::RefCell;
use std::rc::Rc;

use serde::Deserialize;
use wasm_bindgen::prelude::*;

use crate::gpu::Gpu;
use crate::grid::Grid;
use crate::model::Model;
use crate::sample::{
    check_request, grid_picture, grid_size, sample, trajectories, Picture, SampleRequest, Samples,
};
use crate::solver::{Method, NsTable, SolverFile};

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
  /** "auto" (default: WebGPU when available) or "cpu". */
  backend?: "auto" | "cpu";
}
/** Which path runs `generate`. */
export type Backend = "webgpu" | "cpu";
"#;

fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// Version of the runtime.
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}

/// Names of the classical methods the runtime can build (`Sampler.useClassical`).
#[wasm_bindgen(js_name = classicalMethods)]
pub fn classical_methods() -> Vec<String> {
    Method::ALL.iter().map(|m| m.name().to_string()).collect()
}

/// PSNR in dB of each sample of `x` against `reference` (both `[N, dim]`, values in [−1, 1]).
#[wasm_bindgen]
pub fn psnr(x: &[f32], reference: &[f32], dim: usize) -> Result<Vec<f64>, JsError> {
    if dim == 0 || x.len() != reference.len() || x.len() % dim != 0 {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateOptions {
    seed: f64,
    batch: usize,
    #[serde(default)]
    class: Option<i64>,
    #[serde(default)]
    guidance: f64,
    #[serde(default)]
    columns: Option<usize>,
    #[serde(default)]
    backend: Option<String>,
}

impl GenerateOptions {
    fn parse(value: JsValue) -> Result<GenerateOptions, JsError> {
        let options: GenerateOptions = serde_wasm_bindgen::from_value(value)
            .map_err(|e| JsError::new(&format!("generate options: {e}")))?;
        let seed = options.seed;
        if !(seed >= 0.0 && seed.fract() == 0.0 && seed < 9_007_199_254_740_992.0) {
            return Err(JsError::new(&format!(
                "seed must be an integer between 0 and 2^53, got {seed}"
            )));
        }
        if let Some(b) = options.backend.as_deref() {
            if b != "auto" && b != "cpu" {
                return Err(JsError::new(&format!(
                    "backend must be \"auto\" or \"cpu\", got {b:?}"
                )));
            }
        }
        Ok(options)
    }

    fn request(&self) -> SampleRequest {
        SampleRequest {
            seed: self.seed as u64,
            batch: self.batch,
            class: self.class.and_then(|c| u32::try_from(c).ok()),
            guidance: self.guidance,
        }
    }

    fn columns(&self) -> usize {
        self.columns
            .unwrap_or_else(|| (self.batch as f64).sqrt().ceil() as usize)
            .max(1)
    }
}

/// The last samples and, for images, their picture.
struct Last {
    samples: Samples,
    picture: Option<Picture>,
    columns: usize,
}

#[derive(Default)]
struct State {
    model: Option<Rc<Model>>,
    solver: Option<(SolverFile, Rc<NsTable>)>,
    last: Option<Last>,
    gpu: Option<Rc<Gpu>>,
    /// Why the CPU path is in use (empty on the GPU).
    note: String,
}

/// A model and a solver, ready to generate on WebGPU or the CPU.
#[wasm_bindgen]
pub struct Sampler {
    state: Rc<RefCell<State>>,
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
        let state = State {
            note: "the CPU path was asked for".into(),
            ..State::default()
        };
        Sampler {
            state: Rc::new(RefCell::new(state)),
        }
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
        let sampler = Sampler::new();
        if options.gpu != Some(false) {
            let opened = Gpu::new().await;
            let mut state = sampler.state.borrow_mut();
            match opened {
                Ok(gpu) => {
                    state.gpu = Some(Rc::new(gpu));
                    state.note.clear();
                }
                Err(e) => state.note = format!("WebGPU is not available ({})", e.problem),
            }
        }
        Ok(sampler)
    }

    /// Which path the next `generate` uses: "webgpu" or "cpu".
    #[wasm_bindgen(unchecked_return_type = "Backend")]
    pub fn backend(&self) -> String {
        if self.state.borrow().gpu.is_some() {
            "webgpu".into()
        } else {
            "cpu".into()
        }
    }

    /// Why the CPU path is in use ("" on WebGPU), e.g. "WebGPU is not available (…)".
    #[wasm_bindgen(js_name = backendNote)]
    pub fn backend_note(&self) -> String {
        self.state.borrow().note.clone()
    }

    /// The GPU adapter in use, if any.
    pub fn adapter(&self) -> Option<String> {
        self.state.borrow().gpu.as_ref().map(|g| g.adapter())
    }

    /// Destroys the GPU device, as a driver reset would: the next `generate` falls back to
    /// the CPU path. For tests of that fallback.
    #[wasm_bindgen(js_name = loseDevice)]
    pub fn lose_device(&self) {
        if let Some(gpu) = &self.state.borrow().gpu {
            gpu.destroy();
        }
    }

    /// Loads a model file; `name` names it in errors. Returns the model's spec as JSON text.
    #[wasm_bindgen(js_name = loadModel)]
    pub fn load_model(&self, bytes: &[u8], name: &str) -> Result<String, JsError> {
        let model = Model::from_bytes(bytes, name).map_err(js_error)?;
        let spec = serde_json::to_string(model.spec()).map_err(js_error)?;
        let mut state = self.state.borrow_mut();
        if let Some((file, _)) = &state.solver {
            if file.model_id.as_deref().is_some_and(|id| id != model.id()) {
                state.solver = None;
            }
        }
        state.model = Some(Rc::new(model));
        state.last = None;
        Ok(spec)
    }

    /// The loaded model's id (SHA-256 of its file).
    #[wasm_bindgen(js_name = modelId)]
    pub fn model_id(&self) -> Option<String> {
        self.state
            .borrow()
            .model
            .as_ref()
            .map(|m| m.id().to_string())
    }

    /// Loads a solver file; refused if it was distilled for another model than the loaded one.
    #[wasm_bindgen(js_name = loadSolver)]
    pub fn load_solver(&self, json: &str, name: &str) -> Result<(), JsError> {
        let file = SolverFile::from_json(json, name).map_err(js_error)?;
        let mut state = self.state.borrow_mut();
        if let Some(model) = &state.model {
            file.check_model(model.id(), name).map_err(js_error)?;
        }
        let table = Rc::new(file.table());
        state.solver = Some((file, table));
        Ok(())
    }

    /// Uses a classical solver built by the runtime (`method` from `classicalMethods()`,
    /// `grid` "uniform" or "edm").
    #[wasm_bindgen(js_name = useClassical)]
    pub fn use_classical(&self, method: &str, grid: &str, nfe: usize) -> Result<(), JsError> {
        let method: Method = method.parse().map_err(|e: String| JsError::new(&e))?;
        let grid: Grid = grid.parse().map_err(|e: String| JsError::new(&e))?;
        let table = method.build(nfe, grid).map_err(|e| JsError::new(&e))?;
        let name = format!("{}-{}-{nfe}", method.name(), grid.name());
        let file = SolverFile::new(name, method.name(), 0.0, table.clone());
        self.state.borrow_mut().solver = Some((file, Rc::new(table)));
        Ok(())
    }

    /// The loaded solver file as JSON text.
    #[wasm_bindgen(js_name = solverJson)]
    pub fn solver_json(&self) -> Option<String> {
        self.state
            .borrow()
            .solver
            .as_ref()
            .map(|(f, _)| f.to_json())
    }

    /// Generates samples (see `GenerateOptions`); resolves to a Float32Array `[B, C, H, W]`
    /// (images in [−1, 1]). On WebGPU the picture is drawn on the GPU too; if the GPU fails or
    /// its device is lost, this call and the next ones run on the CPU path.
    #[wasm_bindgen(unchecked_return_type = "Promise<Float32Array>")]
    pub fn generate(
        &self,
        #[wasm_bindgen(unchecked_param_type = "GenerateOptions")] options: JsValue,
    ) -> js_sys::Promise {
        let state = Rc::clone(&self.state);
        let options = GenerateOptions::parse(options);
        wasm_bindgen_futures::future_to_promise(async move {
            let options = options?;
            let values = generate(&state, &options).await?;
            Ok(js_sys::Float32Array::from(&values[..]).into())
        })
    }

    /// The states x_0, …, x_n of a solve on the CPU path, as a Float32Array `[n+1, B, D]`
    /// (for drawing the trajectories of 2-D models).
    pub fn trajectories(
        &self,
        #[wasm_bindgen(unchecked_param_type = "GenerateOptions")] options: JsValue,
    ) -> Result<Vec<f32>, JsError> {
        let options = GenerateOptions::parse(options)?;
        let (model, table) = loaded(&self.state.borrow())?;
        let states = trajectories(&model, &table, &options.request()).map_err(js_error)?;
        Ok(states.concat())
    }

    /// The last generated samples as an RGBA8 grid with `columns` tiles per row; the picture's
    /// width is `pictureWidth(columns)`.
    #[wasm_bindgen(js_name = pictureRgba)]
    pub fn picture_rgba(&self, columns: usize) -> Result<Vec<u8>, JsError> {
        let state = self.state.borrow();
        let last = last_samples(&state)?;
        match &last.picture {
            Some(picture) if last.columns == columns => Ok(picture.rgba.clone()),
            _ => Ok(grid_picture(&last.samples, columns).map_err(js_error)?.rgba),
        }
    }

    /// Width in pixels of `pictureRgba(columns)`.
    #[wasm_bindgen(js_name = pictureWidth)]
    pub fn picture_width(&self, columns: usize) -> Result<usize, JsError> {
        let state = self.state.borrow();
        let last = last_samples(&state)?;
        Ok(grid_size(last.samples.shape, columns).0)
    }
}

/// The last `generate`'s result.
fn last_samples(state: &State) -> Result<&Last, JsError> {
    state
        .last
        .as_ref()
        .ok_or_else(|| JsError::new("nothing generated yet"))
}

/// The loaded model and solver table.
fn loaded(state: &State) -> Result<(Rc<Model>, Rc<NsTable>), JsError> {
    let model = state
        .model
        .clone()
        .ok_or_else(|| JsError::new("no model loaded"))?;
    let (_, table) = state
        .solver
        .as_ref()
        .ok_or_else(|| JsError::new("no solver loaded"))?;
    Ok((model, Rc::clone(table)))
}

/// One `generate` call: WebGPU when the sampler has it (falling back to the CPU path, for
/// good, when it fails), else the CPU path. No `RefCell` borrow is held across an await.
async fn generate(
    state: &Rc<RefCell<State>>,
    options: &GenerateOptions,
) -> Result<Vec<f32>, JsError> {
    let (model, table, gpu) = {
        let state = state.borrow();
        let (model, table) = loaded(&state)?;
        (model, table, state.gpu.clone())
    };
    let request = options.request();
    check_request(&model, &request).map_err(js_error)?;
    let columns = options.columns();
    let mut result = None;
    if let Some(gpu) = gpu.filter(|_| options.backend.as_deref() != Some("cpu")) {
        if gpu.is_busy() {
            return Err(JsError::new(
                "the sampler is still generating: wait for the previous call to finish",
            ));
        }
        match crate::gpu::sample(&gpu, &model, &table, &request, columns).await {
            Ok(out) => result = Some((out.samples, out.picture)),
            Err(e) => {
                let mut state = state.borrow_mut();
                state.gpu = None;
                state.note = format!("WebGPU failed, now on the CPU path ({})", e.problem);
            }
        }
    }
    let (samples, picture) = match result {
        Some(out) => out,
        None => (sample(&model, &table, &request).map_err(js_error)?, None),
    };
    let values = samples.values.clone();
    state.borrow_mut().last = Some(Last {
        samples,
        picture,
        columns,
    });
    Ok(values)
}
