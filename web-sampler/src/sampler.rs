//! The sampler the browser and `bns sample` share: a model and a solver, run on the GPU when
//! there is one and on the CPU path otherwise; each `generate` answers with its samples, the path
//! that ran them and their picture ([`Generated`]). When the
//! GPU fails or its device is lost, the sampler moves to the CPU path for good and says why
//! ([`Sampler::backend_note`]).
//!
//! It is single-threaded, like a browser page: every method takes `&self`, the state sits in
//! `RefCell`s and no borrow is held across an await, so a page can ask [`Sampler::backend`] or
//! load another solver while a [`Sampler::generate`] is running. Native callers drive the
//! futures with [`crate::gpu::block_on`].

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use crate::error::number_in_message;
use crate::gpu::{self, Gpu};
use crate::grid::Grid;
use crate::model::Model;
use crate::sample::{
    check_request, grid_picture, sample_with_progress, trajectories, Picture, SampleRequest,
    Samples,
};
use crate::solver::{Method, NsTable, SolverFile};

/// The GPU API as the notes name it: the browser's WebGPU in wasm, Vulkan natively.
const GPU_API: &str = if cfg!(target_arch = "wasm32") {
    "WebGPU"
} else {
    "Vulkan"
};

/// How a caller asks for the GPU path ([`BackendChoice::Gpu`]), as the notes name it.
const GPU_CHOICE: &str = if cfg!(target_arch = "wasm32") {
    "WebGPU"
} else {
    "the GPU (--backend gpu)"
};

/// Which path runs a `generate` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The WGSL kernels ([`crate::gpu`]).
    Gpu,
    /// The CPU path ([`crate::sample`]), bit-identical on every platform.
    Cpu,
}

/// Which path a `generate` call asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// The GPU while the sampler has one, else the CPU path. A GPU failure moves the sampler to
    /// the CPU path for good, and the call is answered there. A software renderer's adapter
    /// (SwiftShader, llvmpipe: [`Gpu::software_renderer`]) is slower than the CPU path, so
    /// this takes the CPU path on one.
    #[default]
    Auto,
    /// The CPU path, even on a sampler with a GPU.
    Cpu,
    /// The GPU only: its failure is the call's error, and the sampler keeps the GPU.
    Gpu,
}

/// Why a sampler call failed.
#[derive(Clone, Debug, PartialEq)]
pub enum SamplerError {
    /// `generate` or `trajectories` before a model was loaded.
    NoModel,
    /// `generate` or `trajectories` before a solver was loaded.
    NoSolver,
    /// A `generate` on the GPU while the previous one is still running.
    Busy,
    /// [`BackendChoice::Gpu`] on a sampler on the CPU path; holds the note saying why.
    NoGpu(String),
    /// A classical solver that cannot be built, e.g. an NFE that is not a multiple of its stages.
    Classical(String),
    /// The solve diverged: `count` of the samples' values are NaN or infinite, the first in
    /// sample `first` (a solver's coefficients or a guidance scale too large for f32); `solver`
    /// names the solver as it was loaded (its file, or the classical solver's name).
    NotFinite {
        solver: String,
        count: usize,
        first: usize,
        guidance: f64,
    },
    /// An input the runtime refused, or a GPU failure.
    Runtime(crate::Error),
}

impl fmt::Display for SamplerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SamplerError::NoModel => f.write_str("no model loaded"),
            SamplerError::NoSolver => f.write_str("no solver loaded"),
            SamplerError::Busy => {
                f.write_str("the sampler is still generating: wait for the previous call to finish")
            }
            SamplerError::NoGpu(note) => write!(f, "no GPU: {note}"),
            SamplerError::Classical(problem) => f.write_str(problem),
            SamplerError::NotFinite {
                solver,
                count,
                first,
                guidance,
            } => write!(
                f,
                "{solver}: the solve diverged: {count} values are NaN or infinite, the first in \
                 sample {first}; the solver's coefficients or the guidance scale (w = {}) are too \
                 large for this model",
                number_in_message(*guidance)
            ),
            SamplerError::Runtime(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SamplerError {}

impl From<crate::Error> for SamplerError {
    fn from(e: crate::Error) -> Self {
        SamplerError::Runtime(e)
    }
}

/// The path `generate` takes unless asked for the CPU.
enum ActiveBackend {
    Gpu(Rc<Gpu>),
    /// The CPU path, and why (e.g. "WebGPU is not available (…)").
    Cpu {
        why: String,
    },
}

/// The solver in use: its file (as loaded or built), its table, and what errors call it (the
/// origin it was loaded from, or the classical solver's name).
struct LoadedSolver {
    file: SolverFile,
    table: Rc<NsTable>,
    origin: String,
}

/// What a `generate` call made: the samples, the path that ran them, and their picture.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    /// `[B, C, H, W]` (images in [−1, 1]).
    pub samples: Samples,
    /// The path that ran: the GPU, or the CPU path (asked for, chosen, or fallen back to after a
    /// GPU failure during this call).
    pub backend: Backend,
    /// The picture the GPU drew, in `columns` tiles per row.
    gpu_picture: Option<Picture>,
    columns: usize,
}

impl Generated {
    /// The samples (images) as a grid with `columns` tiles per row: the GPU's picture when it
    /// drew one in these columns, else drawn now.
    pub fn picture(&self, columns: usize) -> Result<Picture, SamplerError> {
        match &self.gpu_picture {
            Some(picture) if self.columns == columns => Ok(picture.clone()),
            _ => Ok(grid_picture(&self.samples, columns)?),
        }
    }
}

/// A model and a solver, ready to generate on the GPU or the CPU path.
pub struct Sampler {
    model: RefCell<Option<Rc<Model>>>,
    solver: RefCell<Option<LoadedSolver>>,
    backend: RefCell<ActiveBackend>,
    /// Whether [`BackendChoice::Auto`] uses a software renderer's adapter too (for tests of the
    /// GPU fallback on lavapipe).
    auto_on_software: bool,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::new()
    }
}

/// Tiles per row of a picture of `batch` samples unless asked otherwise: ⌈√batch⌉.
pub fn default_columns(batch: usize) -> usize {
    (batch as f64).sqrt().ceil() as usize
}

impl Sampler {
    /// A sampler on the CPU path only.
    pub fn new() -> Sampler {
        Sampler::on(ActiveBackend::Cpu {
            why: "the CPU path was asked for".into(),
        })
    }

    /// A sampler on `gpu`.
    pub fn with_gpu(gpu: Gpu) -> Sampler {
        Sampler::on(ActiveBackend::Gpu(Rc::new(gpu)))
    }

    /// A sampler on `gpu` whose [`BackendChoice::Auto`] uses it even when it is a software
    /// renderer (lavapipe), so that tests reach the automatic fallback on such machines.
    #[cfg(test)]
    fn with_gpu_for_auto(gpu: Gpu) -> Sampler {
        Sampler {
            auto_on_software: true,
            ..Sampler::with_gpu(gpu)
        }
    }

    /// A sampler on the first GPU adapter if there is one, else on the CPU path (the note says
    /// why, e.g. "WebGPU is not available (no GPU adapter: …)").
    pub async fn create() -> Sampler {
        match Gpu::new().await {
            Ok(gpu) => Sampler::with_gpu(gpu),
            Err(e) => Sampler::on(ActiveBackend::Cpu {
                why: format!("{GPU_API} is not available ({})", e.problem),
            }),
        }
    }

    fn on(backend: ActiveBackend) -> Sampler {
        Sampler {
            model: RefCell::new(None),
            solver: RefCell::new(None),
            backend: RefCell::new(backend),
            auto_on_software: false,
        }
    }

    /// Which path the next `generate` with [`BackendChoice::Auto`] uses: the CPU path on a
    /// software renderer's adapter (the GPU path runs every architecture).
    pub fn backend(&self) -> Backend {
        match self.auto_gpu() {
            Some(_) => Backend::Gpu,
            None => Backend::Cpu,
        }
    }

    /// The GPU that [`BackendChoice::Auto`] uses, if any.
    fn auto_gpu(&self) -> Option<Rc<Gpu>> {
        self.gpu()
            .filter(|gpu| self.auto_on_software || gpu.software_renderer().is_none())
    }

    /// Why the CPU path is in use ("" on the GPU).
    pub fn backend_note(&self) -> String {
        match &*self.backend.borrow() {
            ActiveBackend::Gpu(gpu) => match gpu.software_renderer() {
                Some(renderer) if !self.auto_on_software => format!(
                    "the {GPU_API} adapter is {renderer}, a software renderer, slower than the \
                     CPU path; choose {GPU_CHOICE} to use it anyway"
                ),
                _ => String::new(),
            },
            ActiveBackend::Cpu { why } => why.clone(),
        }
    }

    /// The software renderer behind the GPU adapter, if it is one (see
    /// [`Gpu::software_renderer`]).
    pub fn software_renderer(&self) -> Option<String> {
        self.gpu().and_then(|gpu| gpu.software_renderer())
    }

    /// The GPU adapter in use, if any (see [`Gpu::adapter`]).
    pub fn adapter(&self) -> Option<String> {
        self.gpu().map(|gpu| gpu.adapter())
    }

    /// Destroys the GPU device, as a driver reset would: the next `generate` falls back to the
    /// CPU path. For tests of that fallback.
    pub fn lose_device(&self) {
        if let Some(gpu) = self.gpu() {
            gpu.destroy();
        }
    }

    fn gpu(&self) -> Option<Rc<Gpu>> {
        match &*self.backend.borrow() {
            ActiveBackend::Gpu(gpu) => Some(Rc::clone(gpu)),
            ActiveBackend::Cpu { .. } => None,
        }
    }

    /// Uses `model` from now on: a solver distilled for another model is dropped.
    pub fn set_model(&self, model: Model) {
        let mut solver = self.solver.borrow_mut();
        if let Some(loaded) = &*solver {
            if !loaded.file.fits(&model) {
                *solver = None;
            }
        }
        *self.model.borrow_mut() = Some(Rc::new(model));
    }

    /// The model in use.
    pub fn model(&self) -> Option<Rc<Model>> {
        self.model.borrow().clone()
    }

    /// Uses the solver `file` from now on; refused, naming `origin`, if it was distilled for
    /// another model than the one in use.
    pub fn load_solver(&self, file: SolverFile, origin: &str) -> Result<(), SamplerError> {
        if let Some(model) = &*self.model.borrow() {
            file.check_model(model, origin)?;
        }
        let table = Rc::new(file.table());
        *self.solver.borrow_mut() = Some(LoadedSolver {
            file,
            table,
            origin: origin.to_string(),
        });
        Ok(())
    }

    /// Uses a classical solver built by the runtime, named e.g. "dpmpp2m-edm-8", from now on.
    pub fn use_classical(
        &self,
        method: Method,
        grid: Grid,
        nfe: usize,
    ) -> Result<(), SamplerError> {
        let table = method.build(nfe, grid).map_err(SamplerError::Classical)?;
        let name = format!("{}-{}-{nfe}", method.name(), grid.name());
        let file = SolverFile::new(name.clone(), method.name(), 0.0, table.clone());
        *self.solver.borrow_mut() = Some(LoadedSolver {
            file,
            table: Rc::new(table),
            origin: name,
        });
        Ok(())
    }

    /// The solver file in use.
    pub fn solver_file(&self) -> Option<SolverFile> {
        self.solver.borrow().as_ref().map(|s| s.file.clone())
    }

    /// The model and solver table in use, and what errors call the solver.
    fn loaded(&self) -> Result<(Rc<Model>, Rc<NsTable>, String), SamplerError> {
        let model = self.model().ok_or(SamplerError::NoModel)?;
        let solver = self.solver.borrow();
        let solver = solver.as_ref().ok_or(SamplerError::NoSolver)?;
        Ok((model, Rc::clone(&solver.table), solver.origin.clone()))
    }

    /// Generates the samples of `request` `[B, C, H, W]` (images in [−1, 1]) on the path
    /// `choice` allows, and says which ran. On the GPU the picture with `columns` tiles per row
    /// is drawn there too.
    pub async fn generate(
        &self,
        request: &SampleRequest,
        columns: usize,
        choice: BackendChoice,
    ) -> Result<Generated, SamplerError> {
        self.generate_with_progress(request, columns, choice, &mut |_, _| {})
            .await
    }

    /// [`Sampler::generate`], telling `progress(done, total)` how many of the solver's `total`
    /// evaluations are done: after each on the CPU path; at the start and the end on the GPU,
    /// which runs them in one go.
    pub async fn generate_with_progress(
        &self,
        request: &SampleRequest,
        columns: usize,
        choice: BackendChoice,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Generated, SamplerError> {
        let (model, table, origin) = self.loaded()?;
        check_request(&model, request)?;
        let total = table.steps();
        let gpu = match choice {
            BackendChoice::Cpu => None,
            BackendChoice::Auto => self.auto_gpu(),
            BackendChoice::Gpu => Some(
                self.gpu()
                    .ok_or_else(|| SamplerError::NoGpu(self.backend_note()))?,
            ),
        };
        let mut result = None;
        if let Some(gpu) = gpu {
            if gpu.is_busy() {
                return Err(SamplerError::Busy);
            }
            progress(0, total);
            match gpu::sample(&gpu, &model, &table, request, columns).await {
                Ok(out) => {
                    progress(total, total);
                    result = Some((out.samples, out.picture));
                }
                Err(e) if choice == BackendChoice::Gpu => return Err(e.into()),
                Err(e) => {
                    *self.backend.borrow_mut() = ActiveBackend::Cpu {
                        why: format!("{GPU_API} failed, now on the CPU path ({})", e.problem),
                    };
                }
            }
        }
        let (samples, gpu_picture, backend) = match result {
            Some((samples, picture)) => (samples, picture, Backend::Gpu),
            None => (
                sample_with_progress(&model, &table, request, |done| progress(done, total))?,
                None,
                Backend::Cpu,
            ),
        };
        // Never a picture of NaNs presented as a result.
        if let Some(first) = samples.values.iter().position(|v| !v.is_finite()) {
            let dim = (samples.values.len() / samples.shape[0].max(1)).max(1);
            return Err(SamplerError::NotFinite {
                solver: origin,
                count: samples.values[first..]
                    .iter()
                    .filter(|v| !v.is_finite())
                    .count(),
                first: first / dim,
                guidance: request.guidance,
            });
        }
        Ok(Generated {
            samples,
            backend,
            gpu_picture,
            columns,
        })
    }

    /// The states x_0, …, x_n of a solve of `request` on the CPU path, each `[B, D]` (for
    /// drawing the trajectories of 2-D models).
    pub fn trajectories(&self, request: &SampleRequest) -> Result<Vec<Vec<f32>>, SamplerError> {
        let (model, table, _) = self.loaded()?;
        Ok(trajectories(&model, &table, request)?)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::gpu::block_on;
    use crate::model::{spec_for_tests, unet_spec_for_tests, WeightDtype};
    use crate::sample::{grid_size, sample};

    fn request() -> SampleRequest {
        SampleRequest {
            seed: 3,
            batch: 5,
            class: None,
            guidance: 1.5,
            first_row: 0,
        }
    }

    /// A sampler with a random class-conditional image model and Euler at NFE 4.
    fn loaded(sampler: Sampler, seed: u64) -> Sampler {
        sampler.set_model(Model::random(spec_for_tests(), seed).unwrap());
        sampler
            .use_classical(Method::Euler, Grid::Uniform, 4)
            .unwrap();
        sampler
    }

    #[test]
    fn a_diverging_solve_is_an_error_not_samples() {
        let sampler = loaded(Sampler::new(), 4);
        let huge_guidance = SampleRequest {
            guidance: 1e308,
            ..request()
        };
        let error = block_on(sampler.generate(&huge_guidance, 3, BackendChoice::Cpu)).unwrap_err();
        assert!(matches!(error, SamplerError::NotFinite { .. }), "{error}");
        assert!(
            error
                .to_string()
                .starts_with("euler-uniform-4: the solve diverged: "),
            "{error}"
        );
        assert!(error.to_string().contains("w = 1e308"), "{error}");
        // A solver with a coefficient of 1e308.
        let mut table = Method::Euler.build(4, Grid::Uniform).unwrap();
        table.b[2][2] = 1e308;
        let file = SolverFile::new("huge", "bns", 0.0, table);
        sampler.load_solver(file, "huge.json").unwrap();
        let unguided = SampleRequest {
            guidance: 0.0,
            ..request()
        };
        let error = block_on(sampler.generate(&unguided, 3, BackendChoice::Cpu)).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("huge.json: the solve diverged: "),
            "{error}"
        );
        assert!(error.to_string().contains("(w = 0)"), "{error}");
    }

    #[test]
    fn calls_before_loading_say_what_is_missing() {
        let sampler = Sampler::new();
        assert_eq!(sampler.backend(), Backend::Cpu);
        assert_eq!(sampler.backend_note(), "the CPU path was asked for");
        assert_eq!(sampler.adapter(), None);
        let generate = |choice| block_on(sampler.generate(&request(), 3, choice));
        assert_eq!(generate(BackendChoice::Auto), Err(SamplerError::NoModel));
        sampler.set_model(Model::random(spec_for_tests(), 1).unwrap());
        assert_eq!(
            generate(BackendChoice::Auto).unwrap_err().to_string(),
            "no solver loaded"
        );
        let error = sampler
            .use_classical(Method::Rk4, Grid::Uniform, 6)
            .unwrap_err();
        assert!(error.to_string().contains("multiple of 4"), "{error}");
        sampler
            .use_classical(Method::Euler, Grid::Uniform, 4)
            .unwrap();
        let error = generate(BackendChoice::Gpu).unwrap_err();
        assert_eq!(error.to_string(), "no GPU: the CPU path was asked for");
        let mut bad = request();
        bad.batch = 0;
        let error = block_on(sampler.generate(&bad, 3, BackendChoice::Cpu)).unwrap_err();
        assert!(
            error.to_string().starts_with("sample request: batch"),
            "{error}"
        );
    }

    #[test]
    fn the_cpu_path_gives_the_samples_of_sample_and_their_picture() {
        let sampler = loaded(Sampler::new(), 1);
        let model = sampler.model().unwrap();
        let table = Method::Euler.build(4, Grid::Uniform).unwrap();
        let expected = sample(&model, &table, &request()).unwrap();
        let generated = block_on(sampler.generate(&request(), 3, BackendChoice::Auto)).unwrap();
        assert_eq!(generated.samples, expected);
        assert_eq!(generated.backend, Backend::Cpu);
        assert_eq!(sampler.solver_file().unwrap().name, "euler-uniform-4");
        for columns in [1, 3, 5] {
            let picture = generated.picture(columns).unwrap();
            assert_eq!(picture, grid_picture(&expected, columns).unwrap());
            assert_eq!(
                (picture.width, picture.height),
                grid_size(expected.shape, columns)
            );
        }
        // Each call's picture is its own: a later call leaves an earlier one's as it was.
        let other = SampleRequest {
            seed: 4,
            ..request()
        };
        let later = block_on(sampler.generate(&other, 3, BackendChoice::Cpu)).unwrap();
        assert_ne!(later.picture(3).unwrap(), generated.picture(3).unwrap());
        assert_eq!(
            generated.picture(3).unwrap(),
            grid_picture(&expected, 3).unwrap()
        );
        let states = sampler.trajectories(&request()).unwrap();
        assert_eq!(states, trajectories(&model, &table, &request()).unwrap());
    }

    #[test]
    fn a_model_drops_a_solver_distilled_for_another_one() {
        let sampler = loaded(Sampler::new(), 1);
        let id = sampler.model().unwrap().id().to_string();
        let table = Method::Euler.build(2, Grid::Uniform).unwrap();
        let mut other = SolverFile::new("bns-2", "bns", 0.0, table);
        other.model_id = Some("ab".repeat(32));
        let error = sampler.load_solver(other, "bns-2.json").unwrap_err();
        assert!(error.to_string().starts_with("bns-2.json: "), "{error}");
        assert_eq!(sampler.solver_file().unwrap().name, "euler-uniform-4");

        let mut own = sampler.solver_file().unwrap();
        own.model_id = Some(id);
        sampler.load_solver(own, "own.json").unwrap();
        block_on(sampler.generate(&request(), 3, BackendChoice::Cpu)).unwrap();
        // The same model rounded to f16: the solver stays.
        let rounded = sampler
            .model()
            .unwrap()
            .with_dtype(WeightDtype::F16)
            .unwrap();
        sampler.set_model(rounded);
        assert_eq!(sampler.solver_file().unwrap().name, "euler-uniform-4");
        // Another model: the bound solver goes.
        sampler.set_model(Model::random(spec_for_tests(), 2).unwrap());
        assert_eq!(sampler.solver_file(), None);
    }

    /// The GPU, or None (the test is skipped) where there is none and CI does not require one.
    fn gpu_for_tests() -> Option<Gpu> {
        match block_on(Gpu::new()) {
            Ok(gpu) => Some(gpu),
            Err(e) => {
                let required = std::env::var_os("CI")
                    .is_some_and(|v| !v.is_empty() && v != "false")
                    || std::env::var_os("BNS_REQUIRE_GPU").is_some();
                assert!(!required, "CI requires a GPU: {e}");
                eprintln!("skipped: {e}");
                None
            }
        }
    }

    /// On a software renderer's adapter (lavapipe here, SwiftShader in a browser) the automatic
    /// choice takes the CPU path, exactly its samples, and says why; the GPU, asked for, still
    /// runs. On a hardware adapter the automatic choice is the GPU.
    #[test]
    fn a_software_adapter_leaves_the_automatic_choice_on_the_cpu_path() {
        let Some(gpu) = gpu_for_tests() else { return };
        let renderer = gpu.software_renderer();
        let sampler = loaded(Sampler::with_gpu(gpu), 1);
        assert_eq!(sampler.software_renderer(), renderer);
        let Some(renderer) = renderer else {
            assert_eq!(sampler.backend(), Backend::Gpu);
            assert_eq!(sampler.backend_note(), "");
            return;
        };
        assert_eq!(sampler.backend(), Backend::Cpu);
        assert_eq!(
            sampler.backend_note(),
            format!(
                "the Vulkan adapter is {renderer}, a software renderer, slower than the CPU \
                 path; choose the GPU (--backend gpu) to use it anyway"
            )
        );
        let model = sampler.model().unwrap();
        let table = Method::Euler.build(4, Grid::Uniform).unwrap();
        let cpu = sample(&model, &table, &request()).unwrap();
        let mut seen = Vec::new();
        let auto = block_on(sampler.generate_with_progress(
            &request(),
            3,
            BackendChoice::Auto,
            &mut |done, total| seen.push((done, total)),
        ))
        .unwrap();
        assert_eq!((auto.samples, auto.backend), (cpu.clone(), Backend::Cpu));
        assert_eq!(seen, (0..=4).map(|done| (done, 4)).collect::<Vec<_>>());
        let mut seen = Vec::new();
        let forced = block_on(sampler.generate_with_progress(
            &request(),
            3,
            BackendChoice::Gpu,
            &mut |done, total| seen.push((done, total)),
        ))
        .unwrap();
        assert_eq!(seen, [(0, 4), (4, 4)]);
        assert_eq!(forced.backend, Backend::Gpu);
        let worst = forced
            .samples
            .values
            .iter()
            .zip(&cpu.values)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-4, "GPU vs CPU: max |Δ| = {worst}");
        assert_eq!(sampler.backend(), Backend::Cpu);
    }

    /// On a GPU (lavapipe without one), then after the device is lost: the strict choice fails,
    /// the automatic one moves to the CPU path for good and says why.
    #[test]
    fn a_lost_gpu_device_moves_the_sampler_to_the_cpu_path() {
        let Some(gpu) = gpu_for_tests() else { return };
        let sampler = Sampler::with_gpu_for_auto(gpu);
        assert_eq!(sampler.backend(), Backend::Gpu);
        assert_eq!(sampler.backend_note(), "");
        assert!(sampler.adapter().is_some());
        let sampler = loaded(sampler, 1);
        let model = sampler.model().unwrap();
        let table = Method::Euler.build(4, Grid::Uniform).unwrap();
        let cpu = sample(&model, &table, &request()).unwrap();

        let on_gpu = block_on(sampler.generate(&request(), 3, BackendChoice::Auto)).unwrap();
        assert_eq!(on_gpu.backend, Backend::Gpu);
        assert_eq!(on_gpu.samples.shape, cpu.shape);
        let worst = on_gpu
            .samples
            .values
            .iter()
            .zip(&cpu.values)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-4, "GPU vs CPU: max |Δ| = {worst}");
        // The GPU drew the picture, the same as the CPU draws from the GPU's values.
        assert_eq!(
            on_gpu.picture(3).unwrap(),
            grid_picture(&on_gpu.samples, 3).unwrap()
        );

        sampler.lose_device();
        let error = block_on(sampler.generate(&request(), 3, BackendChoice::Gpu)).unwrap_err();
        assert!(error.to_string().contains("lost"), "{error}");
        assert_eq!(sampler.backend(), Backend::Gpu);
        let after = block_on(sampler.generate(&request(), 3, BackendChoice::Auto)).unwrap();
        assert_eq!((after.samples, after.backend), (cpu, Backend::Cpu));
        assert_eq!(sampler.backend(), Backend::Cpu);
        assert_eq!(sampler.adapter(), None);
        let note = sampler.backend_note();
        assert!(
            note.starts_with("Vulkan failed, now on the CPU path (") && note.contains("lost"),
            "{note}"
        );
    }

    /// A U-Net runs on the GPU path when the sampler has a GPU (the CPU's samples to rounding),
    /// else on the CPU path (its samples exactly).
    #[test]
    fn a_unet_runs_on_the_gpu_path_when_there_is_one() {
        // lavapipe is a software adapter, which "auto" would skip: this sampler uses it anyway.
        let sampler =
            block_on(Gpu::new()).map_or_else(|_| Sampler::new(), Sampler::with_gpu_for_auto);
        let has_gpu = sampler.backend() == Backend::Gpu;
        sampler.set_model(Model::random(unet_spec_for_tests(), 2).unwrap());
        sampler
            .use_classical(Method::Euler, Grid::Uniform, 2)
            .unwrap();
        let model = sampler.model().unwrap();
        let table = Method::Euler.build(2, Grid::Uniform).unwrap();
        let cpu = sample(&model, &table, &request()).unwrap();
        let got = block_on(sampler.generate(&request(), 3, BackendChoice::Auto)).unwrap();
        if !has_gpu {
            assert_eq!((got.samples, got.backend), (cpu, Backend::Cpu));
            eprintln!("no GPU: only the CPU path was checked");
            return;
        }
        assert_eq!(sampler.backend(), Backend::Gpu);
        assert_eq!(sampler.backend_note(), "");
        assert_eq!(got.backend, Backend::Gpu);
        let worst = got
            .samples
            .values
            .iter()
            .zip(&cpu.values)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst < 1e-4, "GPU vs CPU U-Net sample: max |Δ| = {worst}");
        let sampler = loaded(sampler, 1);
        assert_eq!(sampler.backend(), Backend::Gpu);
        assert_eq!(sampler.backend_note(), "");
    }
}
