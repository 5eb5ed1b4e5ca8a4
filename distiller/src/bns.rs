//! The BNS solver's parameters and its differentiable sampling loop (`docs/MATH.md` §7).
//!
//! The solver is kept in reduced form, `x_{i+1} = α_i·x_0 + Σ_{j≤i} β_ij·u_j`, which is also a
//! general NS table (`a_i0 = α_i`, the other `a_ij = 0`, `b = β`). The times are
//! `t_i = Σ_{k<i} softmax(θ)_k`: non-decreasing, `t_0 = 0`, `t_n = 1` by construction. With
//! `time_only`, only θ is learned and the coefficients are Euler's on those times
//! (`x_{i+1} = x_i + (t_{i+1} − t_i)·u_i`), the time-only baseline.

use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, IndexOp, Tensor, Var, D};
use web_sampler::solver::NsTable;

use crate::network::CandleNetwork;

/// Smallest step a classical table's time increment is raised to when it initialises θ (RK4's
/// two middle stages share a time; `log 0` would be −∞).
const MIN_INCREMENT: f64 = 1e-4;

/// The states `x_0..x_{n−1}`, the velocities `u_0..u_{n−1}` and `x_n` of one solve.
struct Trajectory {
    states: Vec<Tensor>,
    velocities: Vec<Tensor>,
    last: Tensor,
}

pub struct BnsParameters {
    pub steps: usize,
    /// Time logits θ `[n]`.
    pub theta: Var,
    /// α `[n]` (unused when `time_only`).
    pub alpha: Var,
    /// β `[n, n]`, only the lower triangle (j ≤ i) is used.
    pub beta: Var,
    /// Lower-triangular mask `[n, n]`.
    mask: Tensor,
    pub time_only: bool,
}

impl BnsParameters {
    /// Parameters of a classical table: its reduced form, and its times as softmax logits. A time
    /// step shorter than `MIN_INCREMENT` (10⁻⁴; Heun's and RK4's repeated times, the EDM grid's
    /// first steps beyond ~500 NFE) is raised to it and the increments renormalised, so such a
    /// table's times move by about 10⁻⁴; others (Euler, midpoint on either grid) are exact. For
    /// `time_only` the table must be Euler's (the coefficients are then derived from the times).
    pub fn from_table(table: &NsTable, time_only: bool, device: &Device) -> Result<Self> {
        let n = table.steps();
        if table.times[0] != 0.0 {
            bail!("the initial solver must start at t = 0");
        }
        let increments: Vec<f64> = table
            .times
            .windows(2)
            .map(|w| (w[1] - w[0]).max(MIN_INCREMENT))
            .collect();
        let total: f64 = increments.iter().sum();
        let theta: Vec<f32> = increments.iter().map(|d| (d / total).ln() as f32).collect();
        let reduced = table.reduced();
        let alpha: Vec<f32> = reduced.alpha.iter().map(|&a| a as f32).collect();
        let mut beta = vec![0f32; n * n];
        let mut mask = vec![0f32; n * n];
        for i in 0..n {
            for j in 0..=i {
                beta[i * n + j] = reduced.beta[i][j] as f32;
                mask[i * n + j] = 1.0;
            }
        }
        Ok(BnsParameters {
            steps: n,
            theta: Var::from_vec(theta, n, device)?,
            alpha: Var::from_vec(alpha, n, device)?,
            beta: Var::from_vec(beta, (n, n), device)?,
            mask: Tensor::from_vec(mask, (n, n), device)?,
            time_only,
        })
    }

    /// The parameters the optimiser updates.
    pub fn vars(&self) -> Vec<Var> {
        if self.time_only {
            vec![self.theta.clone()]
        } else {
            vec![self.theta.clone(), self.alpha.clone(), self.beta.clone()]
        }
    }

    /// The times `[n+1]`: 0, cumulative softmax(θ) (the last is 1).
    pub fn times(&self) -> Result<Tensor> {
        let theta = self.theta.as_tensor();
        let shifted = theta.broadcast_sub(&theta.max_keepdim(0)?)?;
        let e = shifted.exp()?;
        let increments = e.broadcast_div(&e.sum_keepdim(0)?)?;
        let zero = Tensor::zeros(1, DType::F32, theta.device())?;
        Ok(Tensor::cat(&[&zero, &increments.cumsum(0)?], 0)?)
    }

    /// `(α [n], β [n, n])` as used by the sampling loop.
    fn coefficients(&self, times: &Tensor) -> Result<(Tensor, Tensor)> {
        let n = self.steps;
        if self.time_only {
            // Euler: α_i = 1, β_ij = t_{j+1} − t_j for j ≤ i.
            let increments = (times.narrow(0, 1, n)? - times.narrow(0, 0, n)?)?;
            let beta = self.mask.broadcast_mul(&increments.unsqueeze(0)?)?;
            let alpha = Tensor::ones(n, DType::F32, times.device())?;
            return Ok((alpha, beta));
        }
        Ok((
            self.alpha.as_tensor().clone(),
            self.beta.as_tensor().mul(&self.mask)?,
        ))
    }

    /// Runs the solver from `x0` `[B, D]` with the guided velocity of `net`; differentiable in
    /// the parameters.
    pub fn solve(
        &self,
        net: &CandleNetwork,
        x0: &Tensor,
        classes: &Tensor,
        guidance: f64,
    ) -> Result<Tensor> {
        let times = self.times()?;
        let (alpha, beta) = self.coefficients(&times)?;
        Ok(Self::trajectory(net, x0, classes, guidance, &times, &alpha, &beta)?.last)
    }

    /// [`solve`](Self::solve)'s result, the same bits, without its graph: nothing of the
    /// network's evaluations is kept (the validation's batches are larger than training's, and
    /// with the graph they kept every evaluation's intermediate values until the end).
    pub fn solve_without_graph(
        &self,
        net: &CandleNetwork,
        x0: &Tensor,
        classes: &Tensor,
        guidance: f64,
    ) -> Result<Tensor> {
        let times = self.times()?.detach();
        let (alpha, beta) = self.coefficients(&times)?;
        let (alpha, beta) = (alpha.detach(), beta.detach());
        Ok(Self::trajectory(net, &x0.detach(), classes, guidance, &times, &alpha, &beta)?.last)
    }

    /// The sampling loop with these times and coefficients (with a graph if they have one).
    fn trajectory(
        net: &CandleNetwork,
        x0: &Tensor,
        classes: &Tensor,
        guidance: f64,
        times: &Tensor,
        alpha: &Tensor,
        beta: &Tensor,
    ) -> Result<Trajectory> {
        let steps = alpha.dim(0)?;
        let mut states = Vec::with_capacity(steps);
        let mut velocities: Vec<Tensor> = Vec::with_capacity(steps);
        let mut x = x0.clone();
        for i in 0..steps {
            let u = net.guided_velocity(&x, &times.i(i)?, classes, guidance)?;
            velocities.push(u);
            // x_{i+1} = α_i·x_0 + Σ_{j≤i} β_ij·u_j
            let mut next = x0.broadcast_mul(&alpha.i(i)?)?;
            for (j, u) in velocities.iter().enumerate() {
                next = (next + u.broadcast_mul(&beta.i((i, j))?)?)?;
            }
            states.push(std::mem::replace(&mut x, next));
        }
        Ok(Trajectory {
            states,
            velocities,
            last: x,
        })
    }

    /// The loss `mean_batch log(MSE(x_n, x_truth))` (the negative PSNR up to scale and shift).
    pub fn loss(
        &self,
        net: &CandleNetwork,
        x0: &Tensor,
        truth: &Tensor,
        classes: &Tensor,
        guidance: f64,
    ) -> Result<Tensor> {
        let x = self.solve(net, x0, classes, guidance)?;
        let mse = (x - truth)?.sqr()?.mean(D::Minus1)?;
        Ok(mse.log()?.mean_all()?)
    }

    /// The loss of [`loss`](Self::loss) and its gradient in the parameters, with the memory of
    /// one network evaluation instead of all `n`: the sampling loop runs without a graph,
    /// keeping only each step's state `x_i` and velocity `u_i`; then, from the last step back,
    /// each evaluation is run again with a graph, just long enough for its vector–Jacobian
    /// product (the discrete adjoint, `docs/MATH.md` §7: `x̄_n = ∂L/∂x_n`,
    /// `ū_j = Σ_{i≥j} β_ij·x̄_{i+1}`, `(x̄_j, t̄_j) = ū_jᵀ·∂u_j/∂(x_j, t_j)`). The parameters'
    /// gradient is then that of `Σ_i α_i⟨x_0, x̄_{i+1}⟩ + Σ_{j≤i} β_ij⟨u_j, x̄_{i+1}⟩ + Σ_j t_j·t̄_j`,
    /// the same as the whole graph's up to rounding, for ~1.2× the time (one more forward pass
    /// per step). Returns the loss and the gradients of [`vars`](Self::vars).
    pub fn loss_and_gradient_recomputed(
        &self,
        net: &CandleNetwork,
        x0: &Tensor,
        truth: &Tensor,
        classes: &Tensor,
        guidance: f64,
    ) -> Result<(Tensor, GradStore)> {
        let n = self.steps;
        let times = self.times()?;
        let (alpha, beta) = self.coefficients(&times)?;
        let (times_d, alpha_d, beta_d) = (times.detach(), alpha.detach(), beta.detach());
        let x0 = x0.detach();
        // The sampling loop without a graph: the states x_0..x_{n-1}, the velocities, x_n.
        let Trajectory {
            states,
            velocities,
            last: x,
        } = Self::trajectory(net, &x0, classes, guidance, &times_d, &alpha_d, &beta_d)?;
        // x̄_n from the loss, which is cheap to differentiate on its own.
        let last = Var::from_tensor(&x)?;
        let mse = (last.as_tensor() - truth)?.sqr()?.mean(D::Minus1)?;
        let loss = mse.log()?.mean_all()?;
        let mut adjoints: Vec<Option<Tensor>> = vec![None; n + 1]; // x̄_1..x̄_n
        adjoints[n] = Some(
            loss.backward()?
                .remove(last.as_tensor())
                .context("the loss does not depend on the last state")?,
        );
        let loss = loss.detach();
        let mut time_adjoints = vec![0f32; n + 1];
        // Back through the steps: x̄_j and t̄_j from ū_j (x_0 and t_0 = 0 need none).
        let beta_values = beta_d.to_vec2::<f32>()?;
        for j in (1..n).rev() {
            let mut u_bar: Option<Tensor> = None;
            for i in j..n {
                let term = adjoints[i + 1]
                    .as_ref()
                    .context("adjoint missing")?
                    .affine(f64::from(beta_values[i][j]), 0.0)?;
                u_bar = Some(match u_bar {
                    None => term,
                    Some(sum) => (sum + term)?,
                });
            }
            let u_bar = u_bar.context("no step after this one")?;
            let x_j = Var::from_tensor(&states[j])?;
            let t_j = Var::from_tensor(&times_d.i(j)?)?;
            let u = net.guided_velocity(x_j.as_tensor(), t_j.as_tensor(), classes, guidance)?;
            let mut grads = (u * &u_bar)?.sum_all()?.backward()?;
            adjoints[j] = grads.remove(x_j.as_tensor());
            if let Some(t_bar) = grads.remove(t_j.as_tensor()) {
                time_adjoints[j] = t_bar.to_scalar::<f32>()?;
            }
        }
        // ⟨x_0, x̄_{i+1}⟩ and ⟨u_j, x̄_{i+1}⟩ as constants; the surrogate's graph is small.
        let dot = |a: &Tensor, b: &Tensor| -> Result<f32> { Ok((a * b)?.sum_all()?.to_scalar()?) };
        let mut with_x0 = vec![0f32; n];
        let mut with_u = vec![0f32; n * n];
        for i in 0..n {
            let x_bar = adjoints[i + 1].as_ref().context("adjoint missing")?;
            with_x0[i] = dot(&x0, x_bar)?;
            for j in 0..=i {
                with_u[i * n + j] = dot(&velocities[j], x_bar)?;
            }
        }
        let device = x0.device();
        let surrogate = ((alpha * Tensor::from_vec(with_x0, n, device)?)?.sum_all()?
            + (beta * Tensor::from_vec(with_u, (n, n), device)?)?.sum_all()?)?;
        let surrogate =
            (surrogate + (times * Tensor::from_vec(time_adjoints, n + 1, device)?)?.sum_all()?)?;
        Ok((loss, surrogate.backward()?))
    }

    /// The current parameters as a general NS table (`a_i0 = α_i`, `b = β`), in f64.
    pub fn table(&self) -> Result<NsTable> {
        let n = self.steps;
        let times_t = self.times()?;
        let (alpha, beta) = self.coefficients(&times_t)?;
        let mut times: Vec<f64> = times_t
            .to_vec1::<f32>()?
            .into_iter()
            .map(f64::from)
            .collect();
        // The cumulative sum ends at 1 up to rounding; the file format wants it exactly.
        times[n] = 1.0;
        for i in 1..n {
            times[i] = times[i].clamp(times[i - 1], 1.0);
        }
        let alpha = alpha.to_vec1::<f32>()?;
        let beta = beta.to_vec2::<f32>()?;
        let mut a = Vec::with_capacity(n);
        let mut b = Vec::with_capacity(n);
        for i in 0..n {
            let mut row = vec![0.0; i + 1];
            row[0] = f64::from(alpha[i]);
            a.push(row);
            b.push(beta[i][..=i].iter().map(|&v| f64::from(v)).collect());
        }
        Ok(NsTable { times, a, b })
    }

    /// A copy of the current values (to keep the best parameters seen).
    pub fn snapshot(&self) -> Result<[Tensor; 3]> {
        Ok([
            self.theta.as_tensor().copy()?,
            self.alpha.as_tensor().copy()?,
            self.beta.as_tensor().copy()?,
        ])
    }

    pub fn restore(&self, snapshot: &[Tensor; 3]) -> Result<()> {
        self.theta.set(&snapshot[0])?;
        self.alpha.set(&snapshot[1])?;
        self.beta.set(&snapshot[2])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use web_sampler::grid::Grid;
    use web_sampler::model::Model;
    use web_sampler::noise::gaussian_batch;
    use web_sampler::sample::integrate;
    use web_sampler::solver::Method;

    #[test]
    fn parameters_reproduce_the_classical_table_they_start_from() {
        let spec = crate::network::tests::tiny_spec([1, 3, 3], 3);
        let model = Model::random(spec, 2).unwrap();
        let net = CandleNetwork::from_model(&model, &Device::Cpu).unwrap();
        let x0 = gaussian_batch(1, 4, 9);
        let labels = vec![0u32, 1, 2, 0];
        for (method, grid, time_only) in [
            (Method::Euler, Grid::Uniform, false),
            (Method::Euler, Grid::Edm, true),
            (Method::Midpoint, Grid::Uniform, false),
            (Method::DpmPp2m, Grid::Edm, false),
        ] {
            let table = method.build(4, grid).unwrap();
            let params = BnsParameters::from_table(&table, time_only, &Device::Cpu).unwrap();
            let xt = Tensor::from_slice(&x0, (4, 9), &Device::Cpu).unwrap();
            let ct = Tensor::from_slice(&labels, 4, &Device::Cpu).unwrap();
            let got = params.solve(&net, &xt, &ct, 1.0).unwrap();
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let expected = integrate(&model, &table, x0.clone(), &labels, 1.0).unwrap();
            for (g, e) in got.iter().zip(&expected) {
                assert!(
                    (g - e).abs() < 1e-4 * (1.0 + e.abs()),
                    "{}: {g} vs {e}",
                    method.name()
                );
            }
            // Converted back to a table, the runtime runs the same solver.
            let back = params.table().unwrap();
            back.validate().unwrap();
            let again = integrate(&model, &back, x0.clone(), &labels, 1.0).unwrap();
            for (g, e) in again.iter().zip(&expected) {
                assert!(
                    (g - e).abs() < 1e-4 * (1.0 + e.abs()),
                    "{}: {g} vs {e}",
                    method.name()
                );
            }
        }
    }

    #[test]
    fn the_recomputed_gradient_equals_the_whole_graphs_and_a_solve_without_graph_its_bits() {
        use web_sampler::model::Prediction;
        let mlp = |prediction| {
            let mut spec = crate::network::tests::tiny_spec([1, 3, 3], 3);
            spec.prediction = prediction;
            spec
        };
        let unet = crate::network::tests::tiny_unet_spec([1, 4, 4], 3, true);
        for (name, spec, guidance, time_only, method, nfe) in [
            (
                "MLP",
                mlp(Prediction::Velocity),
                0.0,
                false,
                Method::Midpoint,
                4,
            ),
            ("MLP", mlp(Prediction::Data), 1.5, false, Method::Ab2, 6),
            ("MLP", mlp(Prediction::Data), 1.0, true, Method::Euler, 5),
            ("U-Net", unet.clone(), 2.0, false, Method::Ab2, 4),
            ("U-Net", unet, 0.0, true, Method::Euler, 3),
        ] {
            let model = Model::random(spec, 7).unwrap();
            let net = CandleNetwork::from_model(&model, &Device::Cpu).unwrap();
            let (rows, dim) = (6, model.spec().data_dim());
            let device = &Device::Cpu;
            let x0 = Tensor::from_vec(gaussian_batch(1, rows, dim), (rows, dim), device).unwrap();
            let truth =
                Tensor::from_vec(gaussian_batch(2, rows, dim), (rows, dim), device).unwrap();
            let classes = Tensor::from_vec(vec![0u32, 1, 2, 0, 1, 2], rows, device).unwrap();
            let params = BnsParameters::from_table(
                &method.build(nfe, Grid::Uniform).unwrap(),
                time_only,
                device,
            )
            .unwrap();
            // Off the classical values, so that no coefficient is special.
            let mut noise = web_sampler::noise::Noise::new(4);
            for var in [&params.theta, &params.alpha, &params.beta] {
                let values: Vec<f32> = var
                    .as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .into_iter()
                    .map(|v| v + (0.05 * noise.gaussian()) as f32)
                    .collect();
                var.set(&Tensor::from_vec(values, var.shape(), device).unwrap())
                    .unwrap();
            }
            // The validation's solve, without a graph, is the same bits.
            let bits = |x: Tensor| x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(
                bits(params.solve(&net, &x0, &classes, guidance).unwrap()),
                bits(
                    params
                        .solve_without_graph(&net, &x0, &classes, guidance)
                        .unwrap()
                ),
                "{name}"
            );
            let whole = params.loss(&net, &x0, &truth, &classes, guidance).unwrap();
            let whole_grads = whole.backward().unwrap();
            let (loss, grads) = params
                .loss_and_gradient_recomputed(&net, &x0, &truth, &classes, guidance)
                .unwrap();
            let (a, b) = (
                whole.to_scalar::<f32>().unwrap(),
                loss.to_scalar::<f32>().unwrap(),
            );
            assert!(
                (a - b).abs() <= 1e-6 * (1.0 + a.abs()),
                "{name}: loss {a} vs {b}"
            );
            let values = |store: &GradStore, var: &Var| -> Vec<f32> {
                store
                    .get(var.as_tensor())
                    .unwrap_or_else(|| panic!("{name}: no gradient"))
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            };
            for var in params.vars() {
                let (expected, got) = (values(&whole_grads, &var), values(&grads, &var));
                let largest = expected.iter().fold(0f32, |m, g| m.max(g.abs()));
                assert!(largest > 0.0, "{name}: a zero gradient tests nothing");
                for (k, (e, g)) in expected.iter().zip(&got).enumerate() {
                    assert!(
                        (e - g).abs() <= 1e-4 * largest,
                        "{name} w = {guidance} time_only {time_only}: value {k}: whole graph \
                         {e}, recomputed {g} (largest {largest})"
                    );
                }
            }
        }
    }

    #[test]
    fn the_runtime_gradient_equals_candles_on_the_same_model_and_pairs() {
        use web_sampler::bns::{loss_and_gradient, BnsParameters as RuntimeParameters};
        use web_sampler::model::Prediction;
        for (prediction, guidance, time_only, method) in [
            (Prediction::Velocity, 0.0, false, Method::Midpoint),
            (Prediction::Data, 1.5, false, Method::Euler),
            (Prediction::Velocity, 1.0, true, Method::Euler),
        ] {
            let mut spec = crate::network::tests::tiny_spec([1, 3, 3], 3);
            spec.prediction = prediction;
            spec.time_scale = 10.0;
            let model = Model::random(spec, 5).unwrap();
            let net = CandleNetwork::from_model(&model, &Device::Cpu).unwrap();
            let (rows, dim) = (6, model.spec().data_dim());
            let x0 = gaussian_batch(1, rows, dim);
            let truth = gaussian_batch(2, rows, dim);
            let labels = vec![0u32, 1, 2, 0, 1, 2];
            let table = method.build(4, Grid::Uniform).unwrap();
            // The runtime's parameters, moved off the classical values and rounded to f32 (as
            // candle holds them); candle's set to the same values.
            let mut runtime = RuntimeParameters::from_table(&table, time_only).unwrap();
            let mut noise = web_sampler::noise::Noise::new(9);
            let values: Vec<f64> = runtime
                .values()
                .iter()
                .map(|v| f64::from((v + 0.05 * noise.gaussian()) as f32))
                .collect();
            runtime.set_values(&values);
            let candle = BnsParameters::from_table(&table, time_only, &Device::Cpu).unwrap();
            let as_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
            candle
                .theta
                .set(&Tensor::from_vec(as_f32(&runtime.theta), 4, &Device::Cpu).unwrap())
                .unwrap();
            candle
                .alpha
                .set(&Tensor::from_vec(as_f32(&runtime.alpha), 4, &Device::Cpu).unwrap())
                .unwrap();
            candle
                .beta
                .set(&Tensor::from_vec(as_f32(&runtime.beta), (4, 4), &Device::Cpu).unwrap())
                .unwrap();

            let expected =
                loss_and_gradient(&model, &runtime, &x0, &truth, &labels, guidance).unwrap();
            let xt = Tensor::from_slice(&x0, (rows, dim), &Device::Cpu).unwrap();
            let yt = Tensor::from_slice(&truth, (rows, dim), &Device::Cpu).unwrap();
            let ct = Tensor::from_slice(&labels, rows, &Device::Cpu).unwrap();
            let loss = candle.loss(&net, &xt, &yt, &ct, guidance).unwrap();
            let candle_loss = f64::from(loss.to_scalar::<f32>().unwrap());
            assert!(
                (candle_loss - expected.loss).abs() < 1e-4 * (1.0 + expected.loss.abs()),
                "loss {candle_loss} vs {}",
                expected.loss
            );
            let grads = loss.backward().unwrap();
            let of = |var: &Var| -> Vec<f64> {
                grads
                    .get(var.as_tensor())
                    .map(|g| {
                        g.flatten_all()
                            .unwrap()
                            .to_vec1::<f32>()
                            .unwrap()
                            .into_iter()
                            .map(f64::from)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            // Candle's gradients in the runtime's layout: θ, then α and β's lower triangle.
            let mut got = of(&candle.theta);
            if !time_only {
                got.extend(of(&candle.alpha));
                let beta = of(&candle.beta);
                for i in 0..4 {
                    got.extend(&beta[i * 4..i * 4 + i + 1]);
                }
            }
            assert_eq!(got.len(), expected.gradient.len());
            let largest = expected.gradient.iter().fold(0.0f64, |m, g| m.max(g.abs()));
            for (k, (g, e)) in got.iter().zip(&expected.gradient).enumerate() {
                assert!(
                    (g - e).abs() < 1e-4 * largest,
                    "{prediction:?} w = {guidance} time_only {time_only}: value {k}: candle {g} \
                     vs runtime {e} (largest {largest})"
                );
            }
        }
    }
}
