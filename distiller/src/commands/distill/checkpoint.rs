//! `bns distill`'s checkpoint, `<output>.ckpt`: everything a killed distillation needs to go on
//! as if it had not stopped — the solver's parameters, AdamW's moments and step count, the best
//! parameters seen and their validation PSNR, the recent training losses, the seconds spent —
//! with the run's settings, which a resume must repeat. The batch order is not stored: it is a
//! function of `--seed` and the iteration, replayed on resuming.
//!
//! A safetensors file: tensors `param.{theta,alpha,beta}`, `best.{theta,alpha,beta}`,
//! `adam_m.{k}` and `adam_v.{k}` (one per optimised tensor, in the optimiser's order), and
//! metadata key [`CHECKPOINT_KEY`] holding [`CheckpointMeta`] as versioned JSON.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use web_sampler::versioned_json::MetadataFormat;

use crate::bns::BnsParameters;
use crate::checkpoint;
use crate::optim::AdamW;

/// The metadata key of a distillation checkpoint.
pub const CHECKPOINT_KEY: &str = "bns.distill.checkpoint";

const CHECKPOINT_FORMAT: MetadataFormat = MetadataFormat {
    kind: "distillation checkpoint",
    key: CHECKPOINT_KEY,
    version: 1,
    reader: "this build",
    advice: "; run without --resume to start afresh",
    unversioned: None,
};

/// The names of the solver's three parameter tensors, in [`BnsParameters::snapshot`]'s order.
const PARAMETERS: [&str; 3] = ["theta", "alpha", "beta"];

/// What a resumed run must share with the one that wrote the checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    pub model_id: String,
    /// The pairs' model, guidance, seed, tolerance and splits, as their metadata says.
    pub pairs: String,
    pub nfe: usize,
    pub init: String,
    pub grid: String,
    pub time_only: bool,
    pub iterations: usize,
    pub batch: usize,
    pub lr: f64,
    pub validate_every: usize,
    pub seed: u64,
}

/// The state after `iteration` iterations, besides the tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub run: RunIdentity,
    pub iteration: usize,
    pub adam_steps: u64,
    pub init_validation: f64,
    pub best_psnr: f64,
    pub best_iteration: usize,
    pub recent: Vec<f64>,
    pub seconds: f64,
}

/// Writes the checkpoint (temporary file + rename).
pub fn save(
    path: &Path,
    meta: &CheckpointMeta,
    params: &BnsParameters,
    adam: &AdamW,
    best: &[Tensor; 3],
) -> Result<()> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut push = |name: String, t: &Tensor| -> Result<()> {
        tensors.push((name, t.dims().to_vec(), t.flatten_all()?.to_vec1::<f32>()?));
        Ok(())
    };
    for ((name, now), best) in PARAMETERS.iter().zip(params.snapshot()?).zip(best) {
        push(format!("param.{name}"), &now)?;
        push(format!("best.{name}"), best)?;
    }
    for (k, p) in adam.params.iter().enumerate() {
        push(format!("adam_m.{k}"), &p.m)?;
        push(format!("adam_v.{k}"), &p.v)?;
    }
    checkpoint::save(path, &CHECKPOINT_FORMAT, meta, &tensors)
}

/// Reads the checkpoint at `path` into `params` and `adam` (both made for `run`); returns its
/// metadata and the best parameters. Refuses a checkpoint of other settings, naming them.
pub fn load(
    path: &Path,
    run: &RunIdentity,
    params: &BnsParameters,
    adam: &mut AdamW,
    device: &Device,
) -> Result<(CheckpointMeta, [Tensor; 3])> {
    let bytes = checkpoint::read(path)?;
    parse(path, &bytes, run, params, adam, device)
}

/// [`load`] of checkpoint `bytes` read from `path`: every error names `path`. `params` change
/// only on success; after an error `adam` is to be discarded.
pub fn parse(
    path: &Path,
    bytes: &[u8],
    run: &RunIdentity,
    params: &BnsParameters,
    adam: &mut AdamW,
    device: &Device,
) -> Result<(CheckpointMeta, [Tensor; 3])> {
    let origin = path.display();
    let invalid = |problem: String| {
        anyhow!(
            "{origin}: not a valid {} ({problem})",
            CHECKPOINT_FORMAT.kind
        )
    };
    let (file, meta): (_, CheckpointMeta) = checkpoint::parse(
        path,
        bytes,
        &CHECKPOINT_FORMAT,
        run,
        |m: &CheckpointMeta| &m.run,
    )?;
    if meta.iteration > run.iterations || meta.adam_steps != meta.iteration as u64 {
        bail!(
            "{origin}: inconsistent checkpoint (iteration {} of {}, {} optimiser steps)",
            meta.iteration,
            run.iterations,
            meta.adam_steps
        );
    }
    let now = params.snapshot()?;
    let get = |name: &str, like: &Tensor| -> Result<Tensor> {
        let values = file.f32s(name, like.dims()).map_err(invalid)?;
        Ok(Tensor::from_vec(values, like.dims(), device)?)
    };
    let mut names = Vec::new();
    let mut restored = Vec::new();
    let mut best = Vec::new();
    for (name, like) in PARAMETERS.iter().zip(&now) {
        restored.push(get(&format!("param.{name}"), like)?);
        best.push(get(&format!("best.{name}"), like)?);
        names.extend([format!("param.{name}"), format!("best.{name}")]);
    }
    for (k, p) in adam.params.iter_mut().enumerate() {
        let like = p.var.as_tensor().clone();
        p.m = get(&format!("adam_m.{k}"), &like)?;
        p.v = get(&format!("adam_v.{k}"), &like)?;
        names.extend([format!("adam_m.{k}"), format!("adam_v.{k}")]);
    }
    file.check_no_other_tensors(&names, "").map_err(invalid)?;
    let finite = |v: f64| v.is_finite();
    if !(meta.recent.iter().all(|&v| finite(v)) && finite(meta.seconds) && meta.seconds >= 0.0) {
        return Err(invalid("a non-finite loss or time".into()));
    }
    let as_array = |v: Vec<Tensor>| -> [Tensor; 3] {
        let mut it = v.into_iter();
        std::array::from_fn(|_| it.next().expect("three parameter tensors"))
    };
    params.restore(&as_array(restored))?;
    adam.steps = meta.adam_steps;
    Ok((meta, as_array(best)))
}
