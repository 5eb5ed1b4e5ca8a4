//! Runtime for Bespoke Non-Stationary (BNS) solvers.
//!
//! It owns the file formats (model, solver) and runs a flow model's velocity network with any
//! non-stationary solver table. The CPU path here is plain Rust so that it gives the same numbers
//! natively and in wasm; it is the fallback in browsers without WebGPU and the test oracle.
//!
//! Modules follow the math of `docs/MATH.md`:
//! * [`path`]: the conditional-OT probability path (α_t, σ_t, λ_t, data prediction).
//! * [`grid`]: time grids (uniform, EDM/Karras mapped to flow time).
//! * [`solver`]: the NS table (general and reduced forms), the solver file, classical constructors.
//! * [`model`]: the model file and the velocity networks' CPU forwards (the MLP and the U-Net).
//! * [`noise`]: the seeded Gaussian generator shared by every platform.
//! * [`dopri5`]: adaptive Dormand–Prince 5(4), and [`truth`]: ground-truth pairs with it.
//! * [`bns`]: BNS distillation — the parametrisation, the loss and its gradient through the
//!   sampling loop (the MLP's vector–Jacobian product), Adam.
//! * [`sample`]: guided sampling with an NS table on the CPU, and image conversion.
//! * [`gpu`]: the same sampling in WGSL compute shaders through wgpu (Vulkan natively, WebGPU in
//!   browsers).
//! * [`sampler`]: the sampler the browser and `bns sample` share: a model and a solver on the GPU
//!   or the CPU path (falling back to the CPU when the GPU fails, saying why), and the last
//!   samples with their picture.
//! * [`metrics`]: PSNR of samples against a reference.
//! * [`tensor_file`]: reading safetensors files as untrusted input, and writing them.
//! * [`versioned_json`]: JSON documents with a `format_version`, checked before their fields.
//! * [`manifest`]: the site's `manifest.json` of a published model.
//! * `wasm` (wasm32 only): the JavaScript API, converting JS values to these types and back.

#[cfg(not(target_arch = "wasm32"))]
pub mod atomic_write;
pub mod bns;
pub mod dopri5;
pub mod error;
pub mod gpu;
pub mod grid;
pub mod manifest;
pub mod metrics;
pub mod model;
#[cfg(all(not(target_arch = "wasm32"), any(test, feature = "testing")))]
#[doc(hidden)]
pub mod mutation;
pub mod noise;
pub mod path;
pub mod sample;
pub mod sampler;
#[cfg(all(not(target_arch = "wasm32"), any(test, feature = "testing")))]
#[doc(hidden)]
pub mod scratch;
pub mod solver;
pub mod tensor_file;
pub mod truth;
pub mod versioned_json;

#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use error::{Error, Result};

/// Version of this runtime (the crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
