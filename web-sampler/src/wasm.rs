//! The JavaScript API (wasm-bindgen): a thin layer over the runtime, holding no logic of its own.
//!
//! ```js
//! const s = new Sampler();
//! s.loadModel(bytes, "model.safetensors");
//! s.loadSolver(jsonText, "bns-8.json");
//! const values = s.generate(1, 16, -1, 0);   // Float32Array [B, C, H, W] in [−1, 1]
//! ```

use wasm_bindgen::prelude::*;

use crate::grid::Grid;
use crate::model::Model;
use crate::sample::{grid_picture, grid_size, sample, SampleRequest, Samples};
use crate::solver::{Method, NsTable, SolverFile};

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

/// A model and a solver, ready to generate.
#[wasm_bindgen]
#[derive(Default)]
pub struct Sampler {
    model: Option<Model>,
    solver: Option<(SolverFile, NsTable)>,
    last: Option<Samples>,
}

#[wasm_bindgen]
impl Sampler {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Sampler {
        Sampler::default()
    }

    /// Which path runs `generate`: "cpu".
    pub fn backend(&self) -> String {
        "cpu".to_string()
    }

    /// Loads a model file; `name` names it in errors. Returns the model's spec as JSON text.
    #[wasm_bindgen(js_name = loadModel)]
    pub fn load_model(&mut self, bytes: &[u8], name: &str) -> Result<String, JsError> {
        let model = Model::from_bytes(bytes, name).map_err(js_error)?;
        if let Some((file, _)) = &self.solver {
            if file.model_id.as_deref().is_some_and(|id| id != model.id()) {
                self.solver = None;
            }
        }
        let spec = serde_json::to_string(model.spec()).map_err(js_error)?;
        self.model = Some(model);
        Ok(spec)
    }

    /// The loaded model's id (SHA-256 of its file).
    #[wasm_bindgen(js_name = modelId)]
    pub fn model_id(&self) -> Option<String> {
        self.model.as_ref().map(|m| m.id().to_string())
    }

    /// Loads a solver file; refused if it was distilled for another model than the loaded one.
    #[wasm_bindgen(js_name = loadSolver)]
    pub fn load_solver(&mut self, json: &str, name: &str) -> Result<(), JsError> {
        let file = SolverFile::from_json(json, name).map_err(js_error)?;
        if let Some(model) = &self.model {
            file.check_model(model.id(), name).map_err(js_error)?;
        }
        let table = file.table();
        self.solver = Some((file, table));
        Ok(())
    }

    /// Uses a classical solver built by the runtime (`method` from `classicalMethods()`,
    /// `grid` "uniform" or "edm").
    #[wasm_bindgen(js_name = useClassical)]
    pub fn use_classical(&mut self, method: &str, grid: &str, nfe: usize) -> Result<(), JsError> {
        let method: Method = method.parse().map_err(|e: String| JsError::new(&e))?;
        let grid: Grid = grid.parse().map_err(|e: String| JsError::new(&e))?;
        let table = method.build(nfe, grid).map_err(|e| JsError::new(&e))?;
        let name = format!("{}-{}-{nfe}", method.name(), grid.name());
        self.solver = Some((
            SolverFile::new(name, method.name(), 0.0, table.clone()),
            table,
        ));
        Ok(())
    }

    /// The loaded solver file as JSON text.
    #[wasm_bindgen(js_name = solverJson)]
    pub fn solver_json(&self) -> Option<String> {
        self.solver.as_ref().map(|(f, _)| f.to_json())
    }

    /// Generates `batch` samples from `seed` (an integer below 2^53). `class` < 0 cycles through
    /// the classes. Returns `[B, C, H, W]` values (images in [−1, 1]).
    pub fn generate(
        &mut self,
        seed: f64,
        batch: usize,
        class: i32,
        guidance: f64,
    ) -> Result<Vec<f32>, JsError> {
        if !(seed >= 0.0 && seed.fract() == 0.0 && seed < 9_007_199_254_740_992.0) {
            return Err(JsError::new(&format!(
                "seed must be an integer between 0 and 2^53, got {seed}"
            )));
        }
        let model = self
            .model
            .as_ref()
            .ok_or_else(|| JsError::new("no model loaded"))?;
        let (_, table) = self
            .solver
            .as_ref()
            .ok_or_else(|| JsError::new("no solver loaded"))?;
        let request = SampleRequest {
            seed: seed as u64,
            batch,
            class: u32::try_from(class).ok(),
            guidance,
        };
        let samples = sample(model, table, &request).map_err(js_error)?;
        let values = samples.values.clone();
        self.last = Some(samples);
        Ok(values)
    }

    /// The last generated samples as an RGBA8 grid with `columns` tiles per row; the picture's
    /// width is `pictureWidth(columns)`.
    #[wasm_bindgen(js_name = pictureRgba)]
    pub fn picture_rgba(&self, columns: usize) -> Result<Vec<u8>, JsError> {
        let samples = self
            .last
            .as_ref()
            .ok_or_else(|| JsError::new("nothing generated yet"))?;
        Ok(grid_picture(samples, columns).map_err(js_error)?.rgba)
    }

    /// Width in pixels of `pictureRgba(columns)`.
    #[wasm_bindgen(js_name = pictureWidth)]
    pub fn picture_width(&self, columns: usize) -> Result<usize, JsError> {
        let samples = self
            .last
            .as_ref()
            .ok_or_else(|| JsError::new("nothing generated yet"))?;
        Ok(grid_size(samples.shape, columns).0)
    }
}
