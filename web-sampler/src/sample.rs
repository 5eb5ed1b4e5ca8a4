//! Guided sampling with a non-stationary solver on the CPU, and conversion of samples to pixels.
//!
//! One NFE is one evaluation of the guided velocity `ũ = (1+w)·u(x,t,c) − w·u(x,t,∅)`; its two
//! passes run as one batch of `2B` rows. The initial noise `x_0` comes from
//! [`noise::gaussian_batch`](crate::noise::gaussian_batch), so a seed gives the same samples on
//! every platform.

use crate::model::Model;
use crate::noise::gaussian_batch;
use crate::solver::NsTable;
use crate::{Error, Result};

/// Largest batch one call may ask for (bounds memory in the browser).
pub const MAX_BATCH: usize = 1024;
/// Largest first row of a request (a part of a batch starts within the largest batch).
pub const MAX_ROW: usize = MAX_BATCH - 1;

/// What to generate: rows `first_row … first_row + batch − 1` of the samples of a seed.
///
/// A row depends only on the seed, its index and its class (FORMATS.md §6), so a batch can be
/// split into requests for its parts (the page runs the halves of a CPU-path batch in two
/// workers) and gives the same values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SampleRequest {
    /// Seed of the initial noise.
    pub seed: u64,
    /// Number of samples.
    pub batch: usize,
    /// Class of every sample; `None` cycles through the classes (row i gets class i mod K) for a
    /// class-conditional model and is ignored by an unconditional one.
    pub class: Option<u32>,
    /// Guidance scale `w` (0 = unguided).
    pub guidance: f64,
    /// The index of the first row (0 for a whole batch).
    pub first_row: usize,
}

impl SampleRequest {
    /// The request's rows of `gaussian_batch(seed, first_row + batch, dim)`: its `x_0`.
    pub fn noise(&self, dim: usize) -> Vec<f32> {
        let mut noise = gaussian_batch(self.seed, self.first_row + self.batch, dim);
        noise.drain(..self.first_row * dim);
        noise
    }
}

/// Generated samples, `[B, C, H, W]` row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Samples {
    pub values: Vec<f32>,
    pub shape: [usize; 4],
}

/// The class label of each row for a request, checked against the model.
pub fn class_labels(model: &Model, request: &SampleRequest) -> Result<Vec<u32>> {
    let spec = model.spec();
    if !spec.is_conditional() {
        if request.class.is_some_and(|c| c != spec.null_class()) {
            return Err(Error::new(
                "sample request",
                "a class was given but the model is unconditional",
            ));
        }
        return Ok(vec![spec.null_class(); request.batch]);
    }
    let classes = spec.num_classes as u32;
    match request.class {
        Some(c) if c > spec.null_class() => Err(Error::new(
            "sample request",
            format!(
                "class {c} is out of range: the model has classes 0..{} and the null class {classes}",
                classes - 1
            ),
        )),
        Some(c) => Ok(vec![c; request.batch]),
        None => Ok((request.first_row..request.first_row + request.batch)
            .map(|i| (i % classes as usize) as u32)
            .collect()),
    }
}

/// The guided velocity `(1+w)·u(x,t,c) − w·u(x,t,∅)` of a batch `x` `[B, D]` at time `t`, both
/// passes in one batch of `2B` rows; with `w = 0` (or an unconditional model) one pass of `B`.
pub fn guided_velocity(
    model: &Model,
    x: &[f32],
    t: f64,
    classes: &[u32],
    guidance: f64,
) -> Result<Vec<f32>> {
    let rows = classes.len();
    let spec = model.spec();
    if guidance == 0.0 || !spec.is_conditional() {
        return model.velocity(x, &vec![t as f32; rows], classes);
    }
    let mut x2 = Vec::with_capacity(2 * x.len());
    x2.extend_from_slice(x);
    x2.extend_from_slice(x);
    let mut c2 = classes.to_vec();
    c2.extend(std::iter::repeat_n(spec.null_class(), rows));
    let u = model.velocity(&x2, &vec![t as f32; 2 * rows], &c2)?;
    let (conditional, unconditional) = u.split_at(x.len());
    let (wc, wu) = ((1.0 + guidance) as f32, guidance as f32);
    Ok(conditional
        .iter()
        .zip(unconditional)
        .map(|(c, n)| wc * c - wu * n)
        .collect())
}

/// Checks a request against the model (batch size, guidance) and returns each row's class.
pub fn check_request(model: &Model, request: &SampleRequest) -> Result<Vec<u32>> {
    if request.first_row > MAX_ROW {
        return Err(Error::new(
            "sample request",
            format!(
                "the first row must be at most {MAX_ROW}, got {}",
                request.first_row
            ),
        ));
    }
    if request.batch == 0 || request.batch > MAX_BATCH {
        return Err(Error::new(
            "sample request",
            format!(
                "batch must be between 1 and {MAX_BATCH}, got {}",
                request.batch
            ),
        ));
    }
    if !request.guidance.is_finite() || request.guidance < 0.0 {
        return Err(Error::new(
            "sample request",
            format!(
                "guidance must be a finite number ≥ 0, got {}",
                request.guidance
            ),
        ));
    }
    if request.guidance != 0.0 && !model.spec().is_conditional() {
        return Err(Error::new(
            "sample request",
            "guidance needs a class-conditional model; this model is unconditional",
        ));
    }
    class_labels(model, request)
}

/// Runs `table` from the request's seeded noise and returns `x_n`. Image models (H·W > 1) are
/// clamped to [−1, 1]; 2-D point models are returned as they are.
pub fn sample(model: &Model, table: &NsTable, request: &SampleRequest) -> Result<Samples> {
    sample_with_progress(model, table, request, |_| {})
}

/// [`sample`], telling `progress` how many of the solver's evaluations are done: 0 before the
/// first, then after each (for a progress bar; the samples are the same).
pub fn sample_with_progress(
    model: &Model,
    table: &NsTable,
    request: &SampleRequest,
    mut progress: impl FnMut(usize),
) -> Result<Samples> {
    let classes = check_request(model, request)?;
    let spec = model.spec();
    let dim = spec.data_dim();
    let x0 = request.noise(dim);
    // The solver shows each state before evaluating the velocity there: the k-th visit follows
    // k − 1 evaluations.
    let mut done = 0;
    let values = solve_guided(model, table, x0, &classes, request.guidance, |_| {
        progress(done);
        done += 1;
    })?;
    progress(done);
    let values = if is_image(spec.data_shape.as_slice()) {
        values.into_iter().map(|v| v.clamp(-1.0, 1.0)).collect()
    } else {
        values
    };
    Ok(Samples {
        values,
        shape: sample_shape(spec, request.batch),
    })
}

/// The shape `[B, C, H, W]` of `batch` samples of the model.
pub fn sample_shape(spec: &crate::model::ModelSpec, batch: usize) -> [usize; 4] {
    let [c, h, w] = shape3(&spec.data_shape);
    [batch, c, h, w]
}

/// The states `x_0, …, x_n` of a solve from the request's seeded noise (unclamped), each
/// `[B, D]`: for drawing trajectories of 2-D models.
pub fn trajectories(
    model: &Model,
    table: &NsTable,
    request: &SampleRequest,
) -> Result<Vec<Vec<f32>>> {
    let classes = check_request(model, request)?;
    let x0 = request.noise(model.spec().data_dim());
    let mut states = Vec::with_capacity(table.steps() + 1);
    let last = solve_guided(model, table, x0, &classes, request.guidance, |x| {
        states.push(x.to_vec())
    })?;
    states.push(last);
    Ok(states)
}

/// Runs `table` from `x0` `[B, D]` with the guided velocity, returning `x_n` unclamped.
pub fn integrate(
    model: &Model,
    table: &NsTable,
    x0: Vec<f32>,
    classes: &[u32],
    guidance: f64,
) -> Result<Vec<f32>> {
    solve_guided(model, table, x0, classes, guidance, |_| {})
}

/// Runs `table` from `x0` with the guided velocity, showing `visit` each state the velocity is
/// evaluated at (x_0, …, x_{n−1}); returns `x_n` unclamped.
fn solve_guided(
    model: &Model,
    table: &NsTable,
    x0: Vec<f32>,
    classes: &[u32],
    guidance: f64,
    mut visit: impl FnMut(&[f32]),
) -> Result<Vec<f32>> {
    // The solver's closure cannot fail; the first error is kept and returned after the loop.
    let mut failure = None;
    let out = table.solve(&x0, |x, t| {
        visit(x);
        if failure.is_some() {
            return vec![0.0; x.len()];
        }
        guided_velocity(model, x, t, classes, guidance).unwrap_or_else(|e| {
            failure = Some(e);
            vec![0.0; x.len()]
        })
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Whether a data shape `[C, H, W]` is an image (as opposed to a point in ℝ^C).
pub fn is_image(data_shape: &[usize]) -> bool {
    data_shape.iter().skip(1).product::<usize>() > 1
}

fn shape3(data_shape: &[usize]) -> [usize; 3] {
    match data_shape {
        [c, h, w] => [*c, *h, *w],
        [c, h] => [*c, *h, 1],
        [c] => [*c, 1, 1],
        _ => [data_shape.iter().product(), 1, 1],
    }
}

/// An RGBA8 picture of samples laid out in a grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub rgba: Vec<u8>,
}

/// Gap between tiles of a [`grid_picture`], in pixels.
pub const GRID_GAP: usize = 2;

/// Lays out image samples `[B, C, H, W]` in [−1, 1] as a grid with `columns` tiles per row
/// (C = 1 is grey, C = 3 is RGB), tiles separated by [`GRID_GAP`] pixels of black.
pub fn grid_picture(samples: &Samples, columns: usize) -> Result<Picture> {
    let [b, c, h, w] = samples.shape;
    if c != 1 && c != 3 {
        return Err(Error::new(
            "samples",
            format!("a picture needs 1 or 3 channels, got {c}"),
        ));
    }
    let columns = columns.clamp(1, b.max(1));
    let (width, height) = grid_size(samples.shape, columns);
    let mut rgba = vec![0u8; width * height * 4];
    for i in 0..b {
        let (ty, tx) = (i / columns, i % columns);
        for y in 0..h {
            for x in 0..w {
                let px = tx * (w + GRID_GAP) + x;
                let py = ty * (h + GRID_GAP) + y;
                let o = (py * width + px) * 4;
                for k in 0..3 {
                    let ch = if c == 1 { 0 } else { k };
                    let v = samples.values[((i * c + ch) * h + y) * w + x];
                    rgba[o + k] = to_byte(v);
                }
                rgba[o + 3] = 255;
            }
        }
    }
    Ok(Picture {
        width,
        height,
        rgba,
    })
}

/// Width and height in pixels of a [`grid_picture`] of samples of `shape` `[B, C, H, W]` with
/// `columns` tiles per row.
pub fn grid_size(shape: [usize; 4], columns: usize) -> (usize, usize) {
    let [b, _, h, w] = shape;
    let columns = columns.clamp(1, b.max(1));
    let rows = b.div_ceil(columns);
    (
        columns * w + (columns - 1) * GRID_GAP,
        rows * h + rows.saturating_sub(1) * GRID_GAP,
    )
}

/// Maps a value in [−1, 1] to a byte: `round((v+1)/2·255)`, clamped.
pub fn to_byte(v: f32) -> u8 {
    (((v.clamp(-1.0, 1.0) + 1.0) * 0.5 * 255.0).round()) as u8
}
