//! The dense layer `y = x·Wᵀ + b` of the CPU forward, with a fixed summation order so that it
//! gives bit-identical results natively and in wasm, with any SIMD width and any thread count.
//!
//! # The order
//!
//! Every output is summed the same way, whatever the kernel, the tiling, the batch size or the
//! row's position in the batch:
//!
//! ```text
//! s = 0;  for i in 0..n { s = s + x[i]·w[i] }  (increasing i; each product rounded to f32,
//! y = s + bias                                   then added: no fused multiply-add)
//! ```
//!
//! IEEE `f32` addition and multiplication are exactly specified and the compiler neither
//! reorders nor fuses them, so this is the result on every platform. No BLAS: its order depends
//! on the machine.
//!
//! # The kernel
//!
//! An outer-product micro-kernel: a tile of `MR` input rows × [`PANEL`] outputs lives in
//! registers; for each `i` in turn it broadcasts `x[r, i]` of each row and multiplies it by the
//! `PANEL` weights `w[o, i]` of the tile, adding the products to the tile's running sums. Each
//! output therefore accumulates along `i` in the one order above; SIMD lanes run over outputs,
//! never over `i`, so the width of a vector changes the speed, not the bits. The weights are
//! packed once ([`PackedLinear::new`], at model load) into panels of [`PANEL`] outputs, `i`
//! major, so the kernel reads them contiguously; ragged panels are padded with zeros (their
//! outputs are computed and dropped). The inputs are taken in passes of `KC` (cache blocking),
//! each pass's slice of the rows packed for the tiles; between passes a running sum waits in
//! `y` as the same `f32`, so the order is unchanged.
//!
//! Variants, chosen at run time ([`Kernel::best`]), all with the same bits (a test compares
//! them): AVX-512F (12 rows × 1 vector of 16, the inputs broadcast from memory into the
//! multiplications: half the instructions of AVX2 for the same work) where the CPU has it, AVX2
//! (6 rows × 2 vectors of 8: 12 accumulators of the 16 `ymm` registers) where it has that,
//! SSE2 (2 rows × 4 vectors of 4: with 3 rows, 12 accumulators, 4 weights and an input are 17
//! values for the 16 `xmm` registers; 2 rows were 8% faster on an AMD EPYC (Zen 1)) on other
//! x86-64, wasm `simd128` (the same 2 rows × 4, for the same 16 registers a browser's compiler
//! has on x86-64; 3 rows were 25–30% slower in Chromium; the build enables the feature:
//! `.cargo/config.toml`), and plain arrays elsewhere.
//!
//! # API
//!
//! * [`PackedLinear`]: a layer packed once, then [`PackedLinear::forward`] for any batch;
//! * [`linear`]: the same product from the PyTorch layout, packing on each call (for layers
//!   whose weights are not kept packed, e.g. im2col convolutions); bit-identical to the packed
//!   form.
//!
//! Threads: rows are independent, so a caller may split the batch's rows across threads
//! (`Model::set_threads` does) without changing a bit.

use super::buffers::{keep, with_len};

/// Outputs per packed weight panel (the register tile's width).
pub(crate) const PANEL: usize = 16;

/// `y[r, o] = bias[o] + Σ_i x[r, i]·weight[o, i]` for `rows` rows: `x` `[rows, n]`,
/// `weight` `[out, n]` (PyTorch layout), `bias` `[out]`, `y` `[rows, out]`, all row-major.
/// The same bits as [`PackedLinear::forward`] of the same layer.
///
/// # Panics
/// If a slice length disagrees with `rows`, `n` and `bias.len()` (a bug in the caller; the
/// model's shapes are checked when it is loaded).
#[cfg_attr(not(test), allow(dead_code))] // for layers not kept packed; the MLP keeps its packed
pub(crate) fn linear(x: &[f32], weight: &[f32], bias: &[f32], n: usize, y: &mut [f32]) {
    PackedLinear::new(weight, bias, n).forward(x, y);
}

/// A dense layer with its weights packed for the kernel: panels of [`PANEL`] outputs, each
/// `[n][PANEL]` (input-major), the last padded with zero weights and biases.
#[derive(Clone, Debug)]
pub(crate) struct PackedLinear {
    /// Inputs per row.
    n: usize,
    /// Outputs per row.
    out: usize,
    /// `⌈out / PANEL⌉` panels of `n · PANEL` weights.
    pub(in crate::model) panels: Vec<f32>,
    /// `⌈out / PANEL⌉ · PANEL` biases.
    pub(in crate::model) bias: Vec<f32>,
}

impl PackedLinear {
    /// Packs `weight` `[out, n]` (PyTorch layout) and `bias` `[out]`.
    ///
    /// # Panics
    /// If `n` or `out` is 0, or `weight` is not `[out, n]` (a bug in the caller).
    pub(crate) fn new(weight: &[f32], bias: &[f32], n: usize) -> PackedLinear {
        let out = bias.len();
        assert!(n > 0 && out > 0, "linear: empty layer");
        assert_eq!(weight.len(), out * n, "linear: weight is not [out, n]");
        let count = out.div_ceil(PANEL);
        let mut panels = vec![0.0f32; count * n * PANEL];
        for (o, row) in weight.chunks_exact(n).enumerate() {
            let panel = &mut panels[(o / PANEL) * n * PANEL..(o / PANEL + 1) * n * PANEL];
            for (i, &w) in row.iter().enumerate() {
                panel[i * PANEL + o % PANEL] = w;
            }
        }
        let mut padded = vec![0.0f32; count * PANEL];
        padded[..out].copy_from_slice(bias);
        PackedLinear {
            n,
            out,
            panels,
            bias: padded,
        }
    }

    /// Inputs per row.
    pub(crate) fn fan_in(&self) -> usize {
        self.n
    }

    /// Outputs per row.
    pub(crate) fn fan_out(&self) -> usize {
        self.out
    }

    /// `y` `[rows, out]` from `x` `[rows, n]`, with the best kernel of this CPU.
    ///
    /// # Panics
    /// If `x` is not `[rows, n]` or `y` not `[rows, out]` (a bug in the caller).
    pub(crate) fn forward(&self, x: &[f32], y: &mut [f32]) {
        self.forward_with(Kernel::best(), x, y);
    }

    /// [`forward`](Self::forward) with a given kernel (every kernel gives the same bits).
    pub(crate) fn forward_with(&self, kernel: Kernel, x: &[f32], y: &mut [f32]) {
        assert_eq!(x.len() % self.n, 0, "linear: x is not [rows, n]");
        let rows = x.len() / self.n;
        assert_eq!(y.len(), rows * self.out, "linear: y is not [rows, out]");
        let layer = Layer {
            x,
            y,
            rows,
            n: self.n,
            out: self.out,
            panels: &self.panels,
            bias: &self.bias,
        };
        match kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernel::Avx512` is only handed out where the CPU has AVX-512F.
            Kernel::Avx512 => unsafe { avx512::run(layer) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernel::Avx2` is only handed out where the CPU has AVX2.
            Kernel::Avx2 => unsafe { avx2::run(layer) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Sse2 => sse2::run(layer),
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Kernel::Simd128 => simd128::run(layer),
            Kernel::Portable => run_tiles::<portable::Lanes4, 3, 4>(layer),
        }
    }
}

/// A variant of the kernel; all give the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// 512-bit AVX-512F (x86-64 CPUs that have it).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// 256-bit AVX2 (x86-64 CPUs that have it).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// 128-bit SSE2 (every x86-64 CPU).
    #[cfg(target_arch = "x86_64")]
    Sse2,
    /// wasm 128-bit SIMD.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    Simd128,
    /// Plain arrays, left to the compiler (where a SIMD variant exists, only the tests run it).
    #[cfg_attr(
        any(
            target_arch = "x86_64",
            all(target_arch = "wasm32", target_feature = "simd128")
        ),
        allow(dead_code)
    )]
    Portable,
}

impl Kernel {
    /// The fastest variant this CPU runs.
    pub(crate) fn best() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                return Kernel::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") {
                return Kernel::Avx2;
            }
            Kernel::Sse2
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        {
            Kernel::Simd128
        }
        #[cfg(not(any(
            target_arch = "x86_64",
            all(target_arch = "wasm32", target_feature = "simd128")
        )))]
        {
            Kernel::Portable
        }
    }

    /// The variant's name, as the benchmarks print it.
    #[cfg(feature = "testing")]
    pub(crate) fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => "AVX-512F",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "AVX2",
            #[cfg(target_arch = "x86_64")]
            Kernel::Sse2 => "SSE2",
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Kernel::Simd128 => "simd128",
            Kernel::Portable => "portable",
        }
    }

    /// Every variant this CPU runs (for tests).
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Kernel> {
        let mut kernels = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            kernels.push(Kernel::Sse2);
            if std::is_x86_feature_detected!("avx2") {
                kernels.push(Kernel::Avx2);
            }
            if std::is_x86_feature_detected!("avx512f") {
                kernels.push(Kernel::Avx512);
            }
        }
        kernels
    }
}

/// One layer's operands, lengths checked by [`PackedLinear::forward_with`].
struct Layer<'a> {
    x: &'a [f32],
    y: &'a mut [f32],
    rows: usize,
    n: usize,
    out: usize,
    panels: &'a [f32],
    bias: &'a [f32],
}

/// A SIMD vector of `WIDTH` `f32` lanes and the operations the kernels need (the dense
/// layer's, and the additions and subtractions of Winograd's transforms, `winograd.rs`).
///
/// # Safety
/// The pointer functions read or write `WIDTH` floats; the caller keeps them in bounds, and
/// only calls a type's functions where the CPU has its instructions.
pub(in crate::model) trait Lanes: Copy {
    const WIDTH: usize;
    unsafe fn splat(v: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    /// `acc + a·b`, rounded after the product and after the sum (never fused).
    unsafe fn add_product(acc: Self, a: Self, b: Self) -> Self;
    unsafe fn add(a: Self, b: Self) -> Self;
    /// `a − b`.
    unsafe fn sub(a: Self, b: Self) -> Self;
    unsafe fn store(self, p: *mut f32);
}

/// Inputs per pass: a pass runs every tile over `KC` inputs (`i`), so that a panel's slice
/// (`KC · PANEL` floats, 16 KiB) stays in the L1 cache. Between passes the running sums wait
/// in `y`, exactly as `f32`, so passes do not change the order.
pub(in crate::model) const KC: usize = 256;

/// For each pass over `KC` inputs: the rows' slices packed block by block (`[k][MR]`, so a
/// tile reads its inputs as one stream, free of the cache conflicts of rows a power of two
/// apart), then every panel, then every block of `MR` rows (a panel's slice stays in cache
/// while the batch passes over it).
#[inline(always)]
fn run_tiles<V: Lanes, const MR: usize, const NV: usize>(layer: Layer<'_>) {
    debug_assert_eq!(NV * V::WIDTH, PANEL);
    let Layer {
        x,
        y,
        rows,
        n,
        out,
        panels,
        bias,
    } = layer;
    // Every value a pass reads is written by its packing first: no need to clear old ones.
    let mut packed = PACKED_INPUTS.take();
    with_len(&mut packed, rows * KC.min(n));
    let mut k_start = 0;
    while k_start < n {
        let k_end = n.min(k_start + KC);
        let depth = k_end - k_start;
        // Block `b` (rows `b·MR..`, `m` of them) at `b·MR·depth`, value (k, r) at `k·m + r`.
        let mut r = 0;
        while r < rows {
            let m = MR.min(rows - r);
            let block = &mut packed[r * depth..(r + m) * depth];
            for j in 0..m {
                let row = &x[(r + j) * n + k_start..(r + j) * n + k_end];
                for (k, &v) in row.iter().enumerate() {
                    block[k * m + j] = v;
                }
            }
            r += m;
        }
        for (p, panel) in panels.chunks_exact(n * PANEL).enumerate() {
            let first = p * PANEL;
            let columns = PANEL.min(out - first);
            let bias = &bias[first..first + PANEL];
            let panel = &panel[k_start * PANEL..k_end * PANEL];
            let mut r = 0;
            while r < rows {
                let tile_rows = MR.min(rows - r);
                let block = &packed[r * depth..(r + tile_rows) * depth];
                let y_rows = &mut y[r * out..(r + tile_rows - 1) * out + first + columns];
                // SAFETY: `block` holds `depth` × `tile_rows` inputs, `panel` `depth · PANEL`
                // weights, `bias` `PANEL` values, and `y_rows` reaches column
                // `first + columns` of its last row; the caller of `run_tiles` runs it only
                // where `V`'s instructions exist.
                unsafe {
                    let tile = Tile {
                        x: block.as_ptr(),
                        depth,
                        resume: k_start > 0,
                        finish: k_end == n,
                        panel: panel.as_ptr(),
                        bias: bias.as_ptr(),
                        y: y_rows.as_mut_ptr().add(first),
                        y_stride: out,
                        columns,
                    };
                    run_rows::<_, V, MR, NV>(&tile, tile_rows);
                }
                r += tile_rows;
            }
        }
        k_start = k_end;
    }
    keep(&PACKED_INPUTS, packed);
}

std::thread_local! {
    /// The packed inputs of the last layer this thread ran, kept for the next: reusing the
    /// memory saves the page faults of a fresh allocation per layer and pass.
    static PACKED_INPUTS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// One register tile: `R` rows × [`PANEL`] outputs, of which the first `columns` are kept,
/// over one pass of `depth` inputs. The sums start at 0, or from `y` when the tile `resume`s
/// an earlier pass; the pass that `finish`es adds the bias.
struct Tile {
    /// `[depth][R]` inputs.
    x: *const f32,
    depth: usize,
    resume: bool,
    finish: bool,
    /// `[depth][PANEL]` weights.
    panel: *const f32,
    bias: *const f32,
    y: *mut f32,
    y_stride: usize,
    columns: usize,
}

impl RowTile for Tile {
    /// # Safety
    /// `x` holds `depth · R` values, `panel` `depth · PANEL`, `bias` `PANEL`; `y` row `r`
    /// (stride `y_stride`) has `columns` writable values; `V`'s instructions exist here.
    #[inline(always)]
    unsafe fn run<V: Lanes, const R: usize, const NV: usize>(&self) {
        let mut acc = start_sums::<V, R, NV>(self.resume, self.y, self.y_stride, self.columns);
        let (mut w, mut x) = (self.panel, self.x);
        for _ in 0..self.depth {
            let wv: [V; NV] = std::array::from_fn(|v| V::load(w.add(v * V::WIDTH)));
            for (r, row) in acc.iter_mut().enumerate() {
                let xv = V::splat(*x.add(r));
                for (sum, &wv) in row.iter_mut().zip(&wv) {
                    *sum = V::add_product(*sum, xv, wv);
                }
            }
            w = w.add(PANEL);
            x = x.add(R);
        }
        store_sums(
            acc,
            self.finish.then_some(self.bias),
            self.y,
            self.y_stride,
            self.columns,
        );
    }
}

/// A register tile run with `R` rows, a constant, so that its accumulators live in registers.
pub(in crate::model) trait RowTile {
    /// # Safety
    /// As the implementation states (its operands in bounds for `R` rows; `V`'s instructions
    /// exist here).
    unsafe fn run<V: Lanes, const R: usize, const NV: usize>(&self);
}

/// Runs `tile` with `rows` rows (1 ..= `MR` ≤ 12), the constant chosen here.
///
/// # Safety
/// `tile.run::<V, rows, NV>()` is safe to call.
#[inline(always)]
pub(in crate::model) unsafe fn run_rows<T: RowTile, V: Lanes, const MR: usize, const NV: usize>(
    tile: &T,
    rows: usize,
) {
    match rows {
        1 => tile.run::<V, 1, NV>(),
        2 if MR >= 2 => tile.run::<V, 2, NV>(),
        3 if MR >= 3 => tile.run::<V, 3, NV>(),
        4 if MR >= 4 => tile.run::<V, 4, NV>(),
        5 if MR >= 5 => tile.run::<V, 5, NV>(),
        6 if MR >= 6 => tile.run::<V, 6, NV>(),
        7 if MR >= 7 => tile.run::<V, 7, NV>(),
        8 if MR >= 8 => tile.run::<V, 8, NV>(),
        9 if MR >= 9 => tile.run::<V, 9, NV>(),
        10 if MR >= 10 => tile.run::<V, 10, NV>(),
        11 if MR >= 11 => tile.run::<V, 11, NV>(),
        12 if MR >= 12 => tile.run::<V, 12, NV>(),
        _ => unreachable!("tile of {rows} rows with MR = {MR}"),
    }
}

/// A register tile's running sums at the start of a pass: zeros, or (when the tile `resume`s an
/// earlier pass) the first `columns` values of `R` rows of `y` (stride `y_stride`).
///
/// # Safety
/// When `resume`, `y` row `r` has `columns` readable values; `V`'s instructions exist here.
#[inline(always)]
pub(super) unsafe fn start_sums<V: Lanes, const R: usize, const NV: usize>(
    resume: bool,
    y: *const f32,
    y_stride: usize,
    columns: usize,
) -> [[V; NV]; R] {
    let mut acc = [[V::splat(0.0); NV]; R];
    if resume {
        for (r, row) in acc.iter_mut().enumerate() {
            let mut values = [0.0f32; PANEL];
            std::ptr::copy_nonoverlapping(y.add(r * y_stride), values.as_mut_ptr(), columns);
            for (v, sum) in row.iter_mut().enumerate() {
                *sum = V::load(values.as_ptr().add(v * V::WIDTH));
            }
        }
    }
    acc
}

/// Stores a register tile's sums into the first `columns` values of `R` rows of `y` (stride
/// `y_stride`), after adding the `PANEL` biases when the pass is the last (`bias` given).
///
/// # Safety
/// `y` row `r` has `columns` writable values, `bias` `PANEL` readable ones; `V`'s
/// instructions exist here.
#[inline(always)]
pub(super) unsafe fn store_sums<V: Lanes, const R: usize, const NV: usize>(
    mut acc: [[V; NV]; R],
    bias: Option<*const f32>,
    y: *mut f32,
    y_stride: usize,
    columns: usize,
) {
    if let Some(bias) = bias {
        let bias: [V; NV] = std::array::from_fn(|v| V::load(bias.add(v * V::WIDTH)));
        for row in acc.iter_mut() {
            for (sum, &b) in row.iter_mut().zip(&bias) {
                *sum = V::add(*sum, b);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let target = y.add(r * y_stride);
        if columns == PANEL {
            for (v, &sum) in row.iter().enumerate() {
                sum.store(target.add(v * V::WIDTH));
            }
        } else {
            let mut values = [0.0f32; PANEL];
            for (v, &sum) in row.iter().enumerate() {
                sum.store(values.as_mut_ptr().add(v * V::WIDTH));
            }
            std::ptr::copy_nonoverlapping(values.as_ptr(), target, columns);
        }
    }
}

/// The kernel on plain arrays of four lanes (the compiler vectorizes what it can).
pub(in crate::model) mod portable {
    use super::Lanes;

    #[derive(Clone, Copy)]
    pub(in crate::model) struct Lanes4([f32; 4]);

    /// One lane: plain `f32` (for the values left over after the vectors).
    #[derive(Clone, Copy)]
    pub(in crate::model) struct Scalar(f32);

    impl Lanes for Scalar {
        const WIDTH: usize = 1;
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            Scalar(v)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Scalar(*p)
        }
        #[inline(always)]
        unsafe fn add_product(acc: Self, a: Self, b: Self) -> Self {
            Scalar(acc.0 + a.0 * b.0)
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            Scalar(a.0 + b.0)
        }
        #[inline(always)]
        unsafe fn sub(a: Self, b: Self) -> Self {
            Scalar(a.0 - b.0)
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            *p = self.0
        }
    }

    impl Lanes for Lanes4 {
        const WIDTH: usize = 4;
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            Lanes4([v; 4])
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Lanes4(std::ptr::read_unaligned(p.cast()))
        }
        #[inline(always)]
        unsafe fn add_product(acc: Self, a: Self, b: Self) -> Self {
            Lanes4(std::array::from_fn(|l| acc.0[l] + a.0[l] * b.0[l]))
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            Lanes4(std::array::from_fn(|l| a.0[l] + b.0[l]))
        }
        #[inline(always)]
        unsafe fn sub(a: Self, b: Self) -> Self {
            Lanes4(std::array::from_fn(|l| a.0[l] - b.0[l]))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            std::ptr::write_unaligned(p.cast(), self.0)
        }
    }
}

/// The kernel with 128-bit SSE2 (part of every x86-64 CPU).
#[cfg(target_arch = "x86_64")]
pub(in crate::model) mod sse2 {
    use super::{run_tiles, Lanes, Layer};
    use std::arch::x86_64::*;

    #[derive(Clone, Copy)]
    pub(in crate::model) struct Sse2(__m128);

    impl Lanes for Sse2 {
        const WIDTH: usize = 4;
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            Sse2(_mm_set1_ps(v))
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Sse2(_mm_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn add_product(acc: Self, a: Self, b: Self) -> Self {
            Sse2(_mm_add_ps(acc.0, _mm_mul_ps(a.0, b.0)))
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            Sse2(_mm_add_ps(a.0, b.0))
        }
        #[inline(always)]
        unsafe fn sub(a: Self, b: Self) -> Self {
            Sse2(_mm_sub_ps(a.0, b.0))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm_storeu_ps(p, self.0)
        }
    }

    pub(super) fn run(layer: Layer<'_>) {
        run_tiles::<Sse2, 2, 4>(layer)
    }
}

/// The kernel with 256-bit AVX2 (checked at run time).
#[cfg(target_arch = "x86_64")]
pub(in crate::model) mod avx2 {
    use super::{run_tiles, Lanes, Layer};
    use std::arch::x86_64::*;

    #[derive(Clone, Copy)]
    pub(in crate::model) struct Avx2(__m256);

    impl Lanes for Avx2 {
        const WIDTH: usize = 8;
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            Avx2(_mm256_set1_ps(v))
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Avx2(_mm256_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn add_product(acc: Self, a: Self, b: Self) -> Self {
            Avx2(_mm256_add_ps(acc.0, _mm256_mul_ps(a.0, b.0)))
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            Avx2(_mm256_add_ps(a.0, b.0))
        }
        #[inline(always)]
        unsafe fn sub(a: Self, b: Self) -> Self {
            Avx2(_mm256_sub_ps(a.0, b.0))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm256_storeu_ps(p, self.0)
        }
    }

    /// # Safety
    /// Only where the CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn run(layer: Layer<'_>) {
        run_tiles::<Avx2, 6, 2>(layer)
    }
}

/// The kernel with 512-bit AVX-512F (checked at run time): one vector per panel.
#[cfg(target_arch = "x86_64")]
pub(in crate::model) mod avx512 {
    use super::{run_tiles, Lanes, Layer};
    use std::arch::x86_64::*;

    #[derive(Clone, Copy)]
    pub(in crate::model) struct Avx512(__m512);

    impl Lanes for Avx512 {
        const WIDTH: usize = 16;
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            Avx512(_mm512_set1_ps(v))
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Avx512(_mm512_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn add_product(acc: Self, a: Self, b: Self) -> Self {
            Avx512(_mm512_add_ps(acc.0, _mm512_mul_ps(a.0, b.0)))
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            Avx512(_mm512_add_ps(a.0, b.0))
        }
        #[inline(always)]
        unsafe fn sub(a: Self, b: Self) -> Self {
            Avx512(_mm512_sub_ps(a.0, b.0))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm512_storeu_ps(p, self.0)
        }
    }

    /// # Safety
    /// Only where the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn run(layer: Layer<'_>) {
        run_tiles::<Avx512, ROWS, 1>(layer)
    }

    /// Rows per tile: 12 accumulators of the 32 `zmm` registers. Measured on an AMD EPYC (Zen 4)
    /// against 8 and 16 rows (and passes of 128 inputs instead of 256): 12 and 16 were as fast,
    /// 8 slower; 12 rows and a pass's 256 inputs (12 KiB) leave the panel's 16 KiB in L1 beside them.
    const ROWS: usize = 12;
}

/// The kernel with wasm's 128-bit SIMD.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(in crate::model) mod simd128 {
    use super::{run_tiles, Lanes, Layer};
    use std::arch::wasm32::*;

    #[derive(Clone, Copy)]
    pub(in crate::model) struct Simd128(v128);

    impl Lanes for Simd128 {
        const WIDTH: usize = 4;
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            Simd128(f32x4_splat(v))
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Simd128(v128_load(p.cast()))
        }
        #[inline(always)]
        unsafe fn add_product(acc: Self, a: Self, b: Self) -> Self {
            Simd128(f32x4_add(acc.0, f32x4_mul(a.0, b.0)))
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            Simd128(f32x4_add(a.0, b.0))
        }
        #[inline(always)]
        unsafe fn sub(a: Self, b: Self) -> Self {
            Simd128(f32x4_sub(a.0, b.0))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            v128_store(p.cast(), self.0)
        }
    }

    pub(super) fn run(layer: Layer<'_>) {
        run_tiles::<Simd128, 2, 4>(layer)
    }
}

/// The documented order of one output, written plainly (for tests).
#[cfg(test)]
fn dot_reference_order(x: &[f32], w: &[f32], bias: f32) -> f32 {
    let mut sum = 0.0f32;
    for (a, b) in x.iter().zip(w) {
        sum += a * b;
    }
    sum + bias
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::Noise;

    fn random(noise: &mut Noise, len: usize) -> Vec<f32> {
        noise.gaussian_f32(len)
    }

    /// Shapes `(rows, n, out)` with ragged row blocks and panels.
    const SHAPES: &[(usize, usize, usize)] = &[
        (1, 1, 1),
        (3, 7, 5),
        (5, 8, 4),
        (4, 19, 9),
        (7, 33, 13),
        (13, 16, 16),
        (6, 50, 17),
        (12, 31, 32),
        (25, 70, 47),
        (7, 300, 20),
        (3, 2 * KC + 1, 17),
    ];

    #[test]
    fn every_output_has_the_documented_order() {
        let mut noise = Noise::new(11);
        for &(rows, n, out) in SHAPES {
            let x = random(&mut noise, rows * n);
            let w = random(&mut noise, out * n);
            let b = random(&mut noise, out);
            let mut y = vec![0.0; rows * out];
            linear(&x, &w, &b, n, &mut y);
            for r in 0..rows {
                for o in 0..out {
                    let expected =
                        dot_reference_order(&x[r * n..(r + 1) * n], &w[o * n..(o + 1) * n], b[o]);
                    assert_eq!(
                        y[r * out + o].to_bits(),
                        expected.to_bits(),
                        "{rows}×{n}→{out}: row {r} out {o}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_kernel_gives_the_same_bits() {
        let kernels = Kernel::available();
        assert!(!kernels.is_empty());
        let mut noise = Noise::new(13);
        for _ in 0..20 {
            let rows = 1 + (noise.uniform() * 40.0) as usize;
            let n = 1 + (noise.uniform() * 600.0) as usize;
            let out = 1 + (noise.uniform() * 60.0) as usize;
            let x = random(&mut noise, rows * n);
            let w = random(&mut noise, out * n);
            let b = random(&mut noise, out);
            let layer = PackedLinear::new(&w, &b, n);
            let mut reference = vec![0.0; rows * out];
            linear(&x, &w, &b, n, &mut reference);
            for &kernel in &kernels {
                let mut y = vec![f32::NAN; rows * out];
                layer.forward_with(kernel, &x, &mut y);
                let same = y
                    .iter()
                    .zip(&reference)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{kernel:?} differs on {rows}×{n}→{out}");
            }
        }
    }

    #[test]
    fn a_row_does_not_depend_on_the_batch() {
        let mut noise = Noise::new(12);
        let (rows, n, out) = (9, 45, 11);
        let x = random(&mut noise, rows * n);
        let w = random(&mut noise, out * n);
        let b = random(&mut noise, out);
        let mut all = vec![0.0; rows * out];
        linear(&x, &w, &b, n, &mut all);
        for r in 0..rows {
            let mut one = vec![0.0; out];
            linear(&x[r * n..(r + 1) * n], &w, &b, n, &mut one);
            assert_eq!(one[..], all[r * out..(r + 1) * out]);
        }
    }
}
