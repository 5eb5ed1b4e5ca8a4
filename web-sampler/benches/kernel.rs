//! How close the CPU path's dense layer runs to what this core can do without fused
//! multiply-add, and what fused multiply-add would give: prints GFLOP/s on one thread.
//!
//!     cargo bench -p web-sampler --bench kernel [-- --rounds 7]
//!
//! Contenders, interleaved round after round (medians):
//!
//! * the register-tile loop alone, on operands in the L1 cache, with each product rounded and
//!   then added — the order `linear.rs` keeps so that native and wasm agree to the bit: what
//!   the kernel's inner loop reaches at best (the dense layers add packing and passes);
//! * the same loop with fused multiply-add (what BLAS and ONNX Runtime use where the CPU has
//!   FMA; the CPU path cannot: wasm has no deterministic fused multiply-add, so the bits would
//!   differ between native and the browser);
//! * with AVX2, a probe of another tile (2 rows × 48 outputs, the weights read by the
//!   multiplications: fewer broadcasts per product), in the same order, checked to the bit;
//! * the CPU path's dense layers themselves (`model::dense`, the best kernel of this CPU) at the
//!   shapes of the Fashion-MNIST MLP at batch 64: 880 → 512, 512 → 512, 512 → 784, packing and
//!   passes included.
//!
//! The tile is the one of the kernel this CPU runs: 12 rows × 16 outputs (one `zmm`) with
//! AVX-512F, 6 rows × 16 (two `ymm`) with AVX2. On CPUs that issue one multiply and one addition
//! per cycle beside two FMAs (Intel since Haswell, AMD Zen 1) the FMA loop is up to twice as
//! fast; on those with separate adders as wide as the multipliers (AMD Zen 2 and later) the two
//! are close. The ratio bounds how near the project's figure can come to ONNX Runtime's
//! (`--bench peers`) on this machine.

use std::time::Instant;

#[path = "common/workload.rs"]
#[allow(dead_code)] // only its flag reader here
mod workload;
use workload::option;

use web_sampler::model::dense::{kernel, Dense};
use web_sampler::noise::Noise;

/// Inputs per tile pass (the kernel's `KC`).
const DEPTH: usize = 256;
/// Outputs per tile (the kernel's panel).
const PANEL: usize = 16;

/// A register-tile loop: `rows` rows × `outputs` over `depth` inputs.
struct TileLoop {
    name: String,
    rows: usize,
    /// Outputs per tile.
    outputs: usize,
    /// Inputs per call (the weights must stay in the L1 cache).
    depth: usize,
    /// Whether each product is fused into its addition (otherwise rounded, then added).
    fused: bool,
    run: unsafe fn(x: *const f32, w: *const f32, y: *mut f32),
}

impl TileLoop {
    /// A loop of the kernel's own tile: `rows` rows × [`PANEL`] outputs over [`DEPTH`] inputs.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn kernel_tile(
        rows: usize,
        vectors: &str,
        fused: bool,
        run: unsafe fn(*const f32, *const f32, *mut f32),
    ) -> TileLoop {
        let what = if fused {
            "fused multiply-add"
        } else {
            "products rounded then added"
        };
        TileLoop {
            name: format!("tile loop {rows} rows × {PANEL}, {vectors}, {what}"),
            rows,
            outputs: PANEL,
            depth: DEPTH,
            fused,
            run,
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod tiles {
    use super::{DEPTH, PANEL};
    use std::arch::x86_64::*;

    /// 6 rows × 2 `ymm`: products rounded then added, or fused multiply-add when `FUSED`.
    ///
    /// # Safety
    /// AVX2 and FMA present; `x` holds `DEPTH · 6` values, `w` `DEPTH · PANEL`, `y` `6 · PANEL`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2<const FUSED: bool>(x: *const f32, w: *const f32, y: *mut f32) {
        let mut acc = [[_mm256_setzero_ps(); 2]; 6];
        for k in 0..DEPTH {
            let wv = [
                _mm256_loadu_ps(w.add(k * PANEL)),
                _mm256_loadu_ps(w.add(k * PANEL + 8)),
            ];
            for (r, row) in acc.iter_mut().enumerate() {
                let xv = _mm256_set1_ps(*x.add(k * 6 + r));
                for (sum, &wv) in row.iter_mut().zip(&wv) {
                    *sum = if FUSED {
                        _mm256_fmadd_ps(xv, wv, *sum)
                    } else {
                        _mm256_add_ps(*sum, _mm256_mul_ps(xv, wv))
                    };
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            _mm256_storeu_ps(y.add(r * PANEL), row[0]);
            _mm256_storeu_ps(y.add(r * PANEL + 8), row[1]);
        }
    }

    /// Inputs per call of [`folded`]: its 48 × 128 weights (24 KiB) stay in a 32 KiB L1 cache.
    pub const FOLDED_DEPTH: usize = 128;

    /// 2 rows × 6 `ymm` (48 outputs), products rounded then added, each weight vector read
    /// from memory by the multiplication itself (twice, once per row) instead of being loaded
    /// into a register: 12 accumulators, 2 broadcast inputs and 2 products fill the 16
    /// registers, and the only instructions beside the arithmetic are the 2 broadcasts per
    /// input. A probe of a kernel layout, not what `linear.rs` runs (it keeps 6 rows × 16
    /// outputs); written in assembly because the compiler loads a value used twice into a
    /// register once.
    ///
    /// # Safety
    /// AVX present; `x` holds `FOLDED_DEPTH · 2` values (input-major), `w` `FOLDED_DEPTH · 48`,
    /// `y` `2 · 48`.
    #[target_feature(enable = "avx")]
    pub unsafe fn folded(x: *const f32, w: *const f32, y: *mut f32) {
        std::arch::asm!(
            "vxorps ymm0, ymm0, ymm0", "vxorps ymm1, ymm1, ymm1", "vxorps ymm2, ymm2, ymm2",
            "vxorps ymm3, ymm3, ymm3", "vxorps ymm4, ymm4, ymm4", "vxorps ymm5, ymm5, ymm5",
            "vxorps ymm6, ymm6, ymm6", "vxorps ymm7, ymm7, ymm7", "vxorps ymm8, ymm8, ymm8",
            "vxorps ymm9, ymm9, ymm9", "vxorps ymm10, ymm10, ymm10", "vxorps ymm11, ymm11, ymm11",
            "2:",
            "vbroadcastss ymm12, dword ptr [{x}]",
            "vbroadcastss ymm13, dword ptr [{x} + 4]",
            "vmulps ymm14, ymm12, ymmword ptr [{w}]", "vaddps ymm0, ymm0, ymm14",
            "vmulps ymm15, ymm13, ymmword ptr [{w}]", "vaddps ymm6, ymm6, ymm15",
            "vmulps ymm14, ymm12, ymmword ptr [{w} + 32]", "vaddps ymm1, ymm1, ymm14",
            "vmulps ymm15, ymm13, ymmword ptr [{w} + 32]", "vaddps ymm7, ymm7, ymm15",
            "vmulps ymm14, ymm12, ymmword ptr [{w} + 64]", "vaddps ymm2, ymm2, ymm14",
            "vmulps ymm15, ymm13, ymmword ptr [{w} + 64]", "vaddps ymm8, ymm8, ymm15",
            "vmulps ymm14, ymm12, ymmword ptr [{w} + 96]", "vaddps ymm3, ymm3, ymm14",
            "vmulps ymm15, ymm13, ymmword ptr [{w} + 96]", "vaddps ymm9, ymm9, ymm15",
            "vmulps ymm14, ymm12, ymmword ptr [{w} + 128]", "vaddps ymm4, ymm4, ymm14",
            "vmulps ymm15, ymm13, ymmword ptr [{w} + 128]", "vaddps ymm10, ymm10, ymm15",
            "vmulps ymm14, ymm12, ymmword ptr [{w} + 160]", "vaddps ymm5, ymm5, ymm14",
            "vmulps ymm15, ymm13, ymmword ptr [{w} + 160]", "vaddps ymm11, ymm11, ymm15",
            "add {x}, 8",
            "add {w}, 192",
            "dec {k}",
            "jnz 2b",
            "vmovups ymmword ptr [{y}], ymm0", "vmovups ymmword ptr [{y} + 32], ymm1",
            "vmovups ymmword ptr [{y} + 64], ymm2", "vmovups ymmword ptr [{y} + 96], ymm3",
            "vmovups ymmword ptr [{y} + 128], ymm4", "vmovups ymmword ptr [{y} + 160], ymm5",
            "vmovups ymmword ptr [{y} + 192], ymm6", "vmovups ymmword ptr [{y} + 224], ymm7",
            "vmovups ymmword ptr [{y} + 256], ymm8", "vmovups ymmword ptr [{y} + 288], ymm9",
            "vmovups ymmword ptr [{y} + 320], ymm10", "vmovups ymmword ptr [{y} + 352], ymm11",
            x = inout(reg) x => _,
            w = inout(reg) w => _,
            k = inout(reg) FOLDED_DEPTH => _,
            y = in(reg) y,
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
            out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
            out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
            out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
            options(nostack),
        );
    }

    /// 12 rows × 1 `zmm`: products rounded then added, or fused multiply-add when `FUSED`.
    ///
    /// # Safety
    /// AVX-512F present; `x` holds `DEPTH · 12` values, `w` `DEPTH · PANEL`, `y` `12 · PANEL`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512<const FUSED: bool>(x: *const f32, w: *const f32, y: *mut f32) {
        let mut acc = [_mm512_setzero_ps(); 12];
        for k in 0..DEPTH {
            let wv = _mm512_loadu_ps(w.add(k * PANEL));
            for (r, sum) in acc.iter_mut().enumerate() {
                let xv = _mm512_set1_ps(*x.add(k * 12 + r));
                *sum = if FUSED {
                    _mm512_fmadd_ps(xv, wv, *sum)
                } else {
                    _mm512_add_ps(*sum, _mm512_mul_ps(xv, wv))
                };
            }
        }
        for (r, sum) in acc.iter().enumerate() {
            _mm512_storeu_ps(y.add(r * PANEL), *sum);
        }
    }
}

/// The tile loops of the kernel this CPU runs, without and with FMA.
fn tile_loops() -> Vec<TileLoop> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return vec![
                TileLoop::kernel_tile(12, "zmm", false, tiles::avx512::<false>),
                TileLoop::kernel_tile(12, "zmm", true, tiles::avx512::<true>),
            ];
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return vec![
                TileLoop::kernel_tile(6, "2 ymm", false, tiles::avx2::<false>),
                TileLoop::kernel_tile(6, "2 ymm", true, tiles::avx2::<true>),
                TileLoop {
                    name: "probe: tile loop 2 rows × 48 (6 ymm), weights read by the multiplications, products rounded then added".into(),
                    rows: 2,
                    outputs: 48,
                    depth: tiles::FOLDED_DEPTH,
                    fused: false,
                    run: tiles::folded,
                },
            ];
        }
    }
    Vec::new()
}

/// GFLOP/s of `flops` done in `seconds`.
fn rate(flops: f64, seconds: f64) -> f64 {
    flops / seconds / 1e9
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = option(&args, "--rounds", "7").parse::<usize>()?.max(1);
    let mut noise = Noise::new(1);

    let loops = tile_loops();
    let x = noise.gaussian_f32(DEPTH * 12);
    let w = noise.gaussian_f32(DEPTH * 48); // for the probe's 48 outputs too
    let mut y = vec![0.0f32; 12 * PANEL]; // ≥ 2 · 48 too
    let calls = 20_000;

    // The MLP's layers at batch 64: (inputs, outputs).
    let batch = 64;
    let shapes = [(880, 512), (512, 512), (512, 512), (512, 784)];
    let layers: Vec<(Dense, Vec<f32>, Vec<f32>)> = shapes
        .iter()
        .map(|&(n, out)| {
            let weight = noise.gaussian_f32(out * n);
            let bias = noise.gaussian_f32(out);
            (
                Dense::new(&weight, &bias, n),
                noise.gaussian_f32(batch * n),
                vec![0.0f32; batch * out],
            )
        })
        .collect();
    let network_flops: f64 = shapes
        .iter()
        .map(|&(n, out)| 2.0 * (batch * n * out) as f64)
        .sum();
    let mut layers = layers;
    let network_calls = 20;

    // Each loop must give the kernel's sums, to the bit, before it is timed.
    for tile in &loops {
        // SAFETY: as in the timed calls below.
        unsafe { (tile.run)(x.as_ptr(), w.as_ptr(), y.as_mut_ptr()) };
        for r in 0..tile.rows {
            for o in 0..tile.outputs {
                let mut sum = 0.0f32;
                for k in 0..tile.depth {
                    let (a, b) = (x[k * tile.rows + r], w[k * tile.outputs + o]);
                    sum = if tile.fused {
                        a.mul_add(b, sum)
                    } else {
                        sum + a * b
                    };
                }
                let got = y[r * tile.outputs + o];
                if got.to_bits() != sum.to_bits() {
                    return Err(format!(
                        "{}: row {r}, output {o}: {got} where the order gives {sum}",
                        tile.name
                    )
                    .into());
                }
            }
        }
    }

    let mut figures: Vec<Vec<f64>> = vec![Vec::new(); loops.len() + 1];
    for round in 0..=rounds {
        for (i, tile) in loops.iter().enumerate() {
            let start = Instant::now();
            for _ in 0..calls {
                // SAFETY: `tile_loops` hands out only loops whose instructions this CPU has;
                // `x`, `w` and `y` hold what a tile of 12 rows reads and writes.
                unsafe { (tile.run)(x.as_ptr(), w.as_ptr(), y.as_mut_ptr()) };
                std::hint::black_box(&mut y);
            }
            let flops = 2.0 * (calls * tile.rows * tile.outputs * tile.depth) as f64;
            if round > 0 {
                figures[i].push(rate(flops, start.elapsed().as_secs_f64()));
            }
        }
        let start = Instant::now();
        for _ in 0..network_calls {
            for (layer, input, output) in layers.iter_mut() {
                layer.forward(input, output);
                std::hint::black_box(&mut *output);
            }
        }
        if round > 0 {
            figures[loops.len()].push(rate(
                network_flops * network_calls as f64,
                start.elapsed().as_secs_f64(),
            ));
        }
    }

    println!(
        "one thread, {rounds} interleaved rounds after a warm-up, medians; the CPU path's kernel here: {}",
        kernel()
    );
    if loops.is_empty() {
        println!("(no AVX2+FMA or AVX-512F on this CPU: the tile loops are not measured)");
    }
    println!();
    println!("| contender | GFLOP/s |");
    println!("|---|---:|");
    let mut medians = Vec::new();
    for (i, tile) in loops.iter().enumerate() {
        let value = median(&mut figures[i]);
        medians.push(value);
        println!("| {} | {value:.1} |", tile.name);
    }
    let network = median(&mut figures[loops.len()]);
    println!(
        "| the CPU path's dense layers, MLP shapes at batch 64 ({} kernel) | {network:.1} |",
        kernel()
    );
    if let [rounded, fused, ref rest @ ..] = medians[..] {
        println!();
        println!(
            "fused / rounded-then-added: {:.2}× (what the same kernel would gain with FMA here); the dense layers reach {:.0}% of the rounded-then-added loop",
            fused / rounded,
            100.0 * network / rounded
        );
        if let [probe] = rest[..] {
            println!(
                "probe / the kernel's rounded-then-added loop: {:.2}× (the same order, fewer instructions beside the arithmetic)",
                probe / rounded
            );
        }
    }
    Ok(())
}
