//! Tests of `bns truth`: the pairs against direct solves, resuming, and the errors.

use super::*;
use crate::dopri5::integrate;
use crate::network::tests::tiny_spec;
use web_sampler::model::{Architecture, ModelSpec};
use web_sampler::scratch::ScratchDir;

/// The network tests' tiny spec, 16 wide.
fn spec(shape: [usize; 3], classes: usize) -> ModelSpec {
    ModelSpec {
        architecture: Architecture::mlp(16, 2),
        dataset: "none".into(),
        ..tiny_spec(shape, classes)
    }
}

/// A tiny unconditional 2-D model.
fn points_model() -> Model {
    Model::random(spec([2, 1, 1], 0), 3).unwrap()
}

/// A tiny class-conditional 4×4 image model with 3 classes.
fn image_model() -> Model {
    Model::random(spec([1, 4, 4], 3), 5).unwrap()
}

/// `model` without the two fastest time-embedding frequencies (`sin`/`cos` of `1000·t` and
/// `100·t`): a velocity that varies smoothly in `t`, as a trained one should. A random model
/// oscillates with period 2π/1000 in `t`, and DOPRI5 at 1e-5 then steps over the
/// oscillations with global errors of ~100× the tolerance (see
/// `batch_of_one_is_a_direct_solve`, which needs no accuracy).
fn smooth(model: &Model) -> Model {
    let spec = model.spec().clone();
    let Architecture::Mlp(mlp) = &spec.architecture else {
        panic!("an MLP spec")
    };
    let inputs = mlp.input_width(&spec);
    let half = spec.time_embedding / 2;
    let fast: Vec<usize> = [0, 1, half, half + 1]
        .iter()
        .map(|k| spec.data_dim() + k)
        .collect();
    let tensors = spec
        .tensor_shapes()
        .into_iter()
        .map(|(name, _)| {
            let mut values = model.tensor(&name).unwrap().to_vec();
            if name == "layers.0.weight" {
                for row in values.chunks_mut(inputs) {
                    for &j in &fast {
                        row[j] = 0.0;
                    }
                }
            }
            (name, values)
        })
        .collect();
    Model::from_tensors(spec, tensors).unwrap()
}

fn options() -> TruthOptions {
    TruthOptions {
        count: 12,
        validation: 3,
        test: 2,
        seed: 9,
        guidance: 0.0,
        class: None,
        rtol: 1e-5,
        atol: 1e-5,
        batch: 4,
        shard: None,
    }
}

/// Each pair's truth against a one-row DOPRI5 solve at tolerance 1e-9: within 10× the
/// pairs' tolerance.
fn check_against_tight_solves(model: &Model, pairs: &Pairs) {
    let dim = pairs.dim();
    let m = &pairs.meta;
    for i in 0..pairs.len() {
        let label = [pairs.labels[i]];
        let x0: Vec<f64> = pairs.noise[i * dim..(i + 1) * dim]
            .iter()
            .map(|&v| v.into())
            .collect();
        let tight = Tolerance {
            rtol: 1e-9,
            atol: 1e-9,
        };
        let reference = integrate(&x0, 0.0, 1.0, tight, |x, t| {
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            guided_velocity(model, &x32, t, &label, m.guidance)
                .map(|u| u.into_iter().map(f64::from).collect::<Vec<f64>>())
        })
        .unwrap();
        for (j, (&got, &want)) in pairs.truth[i * dim..(i + 1) * dim]
            .iter()
            .zip(&reference.x)
            .enumerate()
        {
            let scale = m.atol + m.rtol * want.abs();
            let err = (f64::from(got) - want).abs() / scale;
            assert!(
                err < 10.0,
                "pair {i}, value {j}: {got} vs {want} ({err:.2} tol)"
            );
        }
    }
}

#[test]
fn unconditional_pairs_file_matches_tight_solves() {
    let scratch = ScratchDir::new("truth-unconditional");
    let dir = scratch.path();
    let output = dir.join("pairs.safetensors");
    let model = smooth(&points_model());
    let mut batches = Vec::new();
    let pairs = write_pairs(&model, &options(), &output, &mut |e| batches.push(e)).unwrap();
    let loaded = Pairs::load(&output).unwrap();
    assert_eq!(loaded, pairs);
    loaded.check_model(model.id(), &output).unwrap();
    assert_eq!(loaded.noise, gaussian_batch(9, 12, 2));
    assert_eq!(loaded.labels, vec![model.spec().null_class(); 12]);
    let m = &loaded.meta;
    assert_eq!((m.train, m.validation, m.test, m.seed), (7, 3, 2, 9));
    assert_eq!((m.rtol, m.atol, m.guidance), (1e-5, 1e-5, 0.0));
    assert_eq!(m.data_shape, vec![2, 1, 1]);
    assert_eq!(batches.len(), 3);
    assert!(matches!(
        batches[2],
        TruthEvent::Batch {
            done: 12,
            count: 12,
            ..
        }
    ));
    check_against_tight_solves(&model, &loaded);
    assert!(!partial_path(&output).exists());
    let names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("pairs.safetensors")]);
}

#[test]
fn guided_class_conditional_pairs_match_tight_solves() {
    let model = smooth(&image_model());
    let options = TruthOptions {
        guidance: 1.5,
        count: 7,
        validation: 2,
        test: 1,
        batch: 3,
        ..options()
    };
    let pairs = compute_pairs(&model, &options, &mut |_| {}).unwrap();
    assert_eq!(pairs.labels, vec![0, 1, 2, 0, 1, 2, 0]);
    assert_eq!(pairs.dim(), 16);
    assert_eq!(pairs.meta.guidance, 1.5);
    check_against_tight_solves(&model, &pairs);
    let one_class = TruthOptions {
        class: Some(2),
        ..options
    };
    let pairs = compute_pairs(&model, &one_class, &mut |_| {}).unwrap();
    assert_eq!(pairs.labels, vec![2; 7]);
}

#[test]
fn batch_of_one_is_a_direct_solve() {
    // The raw random model (fast in t): each pair is exactly a one-row DOPRI5 solve at the
    // same tolerance, and the mean NFE is the mean of those solves' NFE.
    let model = image_model();
    let options = TruthOptions {
        count: 5,
        validation: 2,
        test: 1,
        batch: 1,
        guidance: 0.7,
        ..options()
    };
    let pairs = compute_pairs(&model, &options, &mut |_| {}).unwrap();
    let dim = pairs.dim();
    let tol = Tolerance {
        rtol: options.rtol,
        atol: options.atol,
    };
    let mut nfe = 0;
    for i in 0..pairs.len() {
        let label = [pairs.labels[i]];
        let x0: Vec<f64> = pairs.noise[i * dim..(i + 1) * dim]
            .iter()
            .map(|&v| v.into())
            .collect();
        let direct = integrate(&x0, 0.0, 1.0, tol, |x, t| {
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            guided_velocity(&model, &x32, t, &label, 0.7)
                .map(|u| u.into_iter().map(f64::from).collect::<Vec<f64>>())
        })
        .unwrap();
        let truth: Vec<f32> = direct.x.iter().map(|&v| v as f32).collect();
        assert_eq!(&pairs.truth[i * dim..(i + 1) * dim], &truth[..], "pair {i}");
        nfe += direct.nfe;
    }
    assert_eq!(pairs.meta.mean_nfe, nfe as f64 / 5.0);
}

#[test]
fn mean_nfe_is_what_was_spent() {
    let model = image_model();
    let options = TruthOptions {
        count: 10,
        batch: 4,
        ..options()
    };
    let (mut calls, mut row_calls) = (0usize, 0usize);
    let mut reported = Vec::new();
    let pairs = compute_with(
        &model,
        &options,
        &mut Field::Runtime(&mut |x, t, c| {
            calls += 1;
            row_calls += c.len();
            guided_velocity(&model, x, t, c, 0.0)
        }),
        &mut |e| reported.push(e),
    )
    .unwrap();
    // Batches of 4, 4 and 2 rows: Σ calls × rows / pairs.
    assert_eq!(pairs.meta.mean_nfe, row_calls as f64 / 10.0);
    let batch_nfe: usize = reported
        .iter()
        .map(|e| match e {
            TruthEvent::Batch { batch_nfe, .. } => *batch_nfe,
            TruthEvent::Resuming { .. } => 0,
        })
        .sum();
    assert_eq!(batch_nfe, calls);
    assert!(pairs.meta.mean_nfe > 10.0, "{}", pairs.meta.mean_nfe);
}

#[test]
fn resume_after_interruption_gives_the_same_file() {
    let scratch = ScratchDir::new("truth-resume");
    let dir = scratch.path();
    let model = points_model();
    let options = options();
    let whole = dir.join("whole.safetensors");
    let uninterrupted = write_pairs(&model, &options, &whole, &mut |_| {}).unwrap();

    // Interrupted during the third batch: the first two (8 pairs) are kept.
    let output = dir.join("resumed.safetensors");
    let partial = partial_path(&output);
    let batches = std::cell::Cell::new(0);
    let calls_in_batch = std::cell::Cell::new(0);
    let result = write_with(
        &model,
        &options,
        &output,
        &mut Field::Runtime(&mut |x, t, c| {
            if batches.get() == 2 && calls_in_batch.get() == 5 {
                return Err(web_sampler::Error::new("test", "interrupted"));
            }
            calls_in_batch.set(calls_in_batch.get() + 1);
            guided_velocity(&model, x, t, c, 0.0)
        }),
        &mut |e| {
            if let TruthEvent::Batch { .. } = e {
                batches.set(batches.get() + 1);
                calls_in_batch.set(0);
            }
        },
    );
    let shown = format!("{:#}", result.unwrap_err());
    assert!(
        shown.contains("interrupted") && shown.contains("pairs 8..12"),
        "{shown}"
    );
    assert!(!output.exists());
    assert!(partial.exists());

    // Other arguments are refused, and the partial is left alone.
    let before = std::fs::read(&partial).unwrap();
    let other = TruthOptions {
        seed: 10,
        ..options.clone()
    };
    let shown = format!(
        "{:#}",
        write_pairs(&model, &other, &output, &mut |_| {}).unwrap_err()
    );
    assert!(
        shown.contains("resumed.safetensors.partial")
            && shown.contains("--seed 9 there, 10 here")
            && shown.contains("delete it"),
        "{shown}"
    );
    let other_model = Model::random(spec([2, 1, 1], 0), 4).unwrap();
    let shown = format!(
        "{:#}",
        write_pairs(&other_model, &options, &output, &mut |_| {}).unwrap_err()
    );
    assert!(
        shown.contains(model.id()) && shown.contains(other_model.id()),
        "{shown}"
    );
    assert_eq!(std::fs::read(&partial).unwrap(), before);

    // The same arguments continue from 8 pairs.
    let mut events = Vec::new();
    let resumed = write_pairs(&model, &options, &output, &mut |e| events.push(e)).unwrap();
    assert_eq!(events[0], TruthEvent::Resuming { done: 8 });
    assert_eq!(events.len(), 2);
    assert!(!partial.exists());
    let loaded = Pairs::load(&output).unwrap();
    assert_eq!(loaded, resumed);
    let reference = Pairs::load(&whole).unwrap();
    assert_eq!(reference, uninterrupted);
    assert_eq!(loaded.noise, reference.noise);
    assert_eq!(loaded.truth, reference.truth, "bit-identical truth");
    assert_eq!(loaded.labels, reference.labels);
    let same_but_time = PairsMeta {
        seconds: reference.meta.seconds,
        ..loaded.meta.clone()
    };
    assert_eq!(same_but_time, reference.meta);
}

#[test]
fn a_damaged_partial_is_refused() {
    let scratch = ScratchDir::new("truth-damaged");
    let dir = scratch.path();
    let output = dir.join("pairs.safetensors");
    std::fs::write(partial_path(&output), b"not a safetensors file").unwrap();
    let shown = format!(
        "{:#}",
        write_pairs(&points_model(), &options(), &output, &mut |_| {}).unwrap_err()
    );
    assert!(
        shown.contains("pairs.safetensors.partial") && shown.contains("delete it"),
        "{shown}"
    );
}

#[test]
fn an_unwritable_output_is_refused_before_solving() {
    let scratch = ScratchDir::new("truth-unwritable");
    let dir = scratch.path();
    let mut calls = 0;
    for output in [dir.join("missing/pairs.safetensors"), dir.to_path_buf()] {
        let result = write_with(
            &points_model(),
            &options(),
            &output,
            &mut Field::Runtime(&mut |_, _, _| {
                calls += 1;
                Ok(vec![])
            }),
            &mut |_| {},
        );
        let shown = format!("{:#}", result.unwrap_err());
        assert!(shown.contains(&output.display().to_string()), "{shown}");
    }
    assert_eq!(calls, 0);
}

#[test]
fn bad_arguments_are_refused() {
    let points = points_model();
    let image = image_model();
    let cases: Vec<(&Model, TruthOptions, &str)> = vec![
        (
            &points,
            TruthOptions {
                validation: 10,
                ..options()
            },
            "--validation and --test must be at least 1 and leave training pairs out of --count \
             (12), got --validation 10 and --test 2",
        ),
        (
            &points,
            TruthOptions {
                test: 0,
                ..options()
            },
            "--test",
        ),
        (
            &points,
            TruthOptions {
                validation: 0,
                ..options()
            },
            "--validation",
        ),
        (
            &points,
            TruthOptions {
                guidance: 1.0,
                ..options()
            },
            "guidance needs a class-conditional model",
        ),
        (
            &points,
            TruthOptions {
                class: Some(0),
                ..options()
            },
            "needs a class-conditional model",
        ),
        (
            &image,
            TruthOptions {
                class: Some(4),
                ..options()
            },
            "out of range",
        ),
        (
            &image,
            TruthOptions {
                guidance: -1.0,
                ..options()
            },
            "--guidance",
        ),
        (
            &image,
            TruthOptions {
                guidance: f64::NAN,
                ..options()
            },
            "--guidance",
        ),
        (
            &points,
            TruthOptions {
                batch: 0,
                ..options()
            },
            "--batch",
        ),
        (
            &points,
            TruthOptions {
                rtol: 0.0,
                ..options()
            },
            "--rtol",
        ),
        (
            &points,
            TruthOptions {
                atol: f64::INFINITY,
                ..options()
            },
            "--atol",
        ),
    ];
    for (model, options, expected) in cases {
        let shown = format!(
            "{:#}",
            compute_pairs(model, &options, &mut |_| {}).unwrap_err()
        );
        assert!(shown.contains(expected), "{options:?}: {shown}");
    }
    // The null class of a conditional model is allowed (unconditional samples).
    let null = TruthOptions {
        class: Some(3),
        count: 3,
        validation: 1,
        test: 1,
        ..options()
    };
    assert!(compute_pairs(&image, &null, &mut |_| {}).is_ok());
}

#[test]
fn request_checks_name_the_flag() {
    let points = points_model();
    let image = image_model();
    let cases: Vec<(&Model, TruthOptions, &str)> = vec![
        (
            &points,
            TruthOptions {
                batch: 0,
                ..options()
            },
            "--batch must be between 1 and 1024, got 0",
        ),
        (
            &image,
            TruthOptions {
                guidance: -1.0,
                ..options()
            },
            "--guidance must be a finite number ≥ 0, got -1",
        ),
        (
            &points,
            TruthOptions {
                guidance: 1.0,
                ..options()
            },
            "--guidance needs a class-conditional model; this model is unconditional",
        ),
        (
            &image,
            TruthOptions {
                class: Some(4),
                ..options()
            },
            "--class 4 is out of range: the model has classes 0..2 and the null class 3",
        ),
        (
            &points,
            TruthOptions {
                class: Some(0),
                ..options()
            },
            "--class 0 needs a class-conditional model; this model is unconditional",
        ),
    ];
    for (model, options, expected) in cases {
        let shown = format!("{:#}", check_options(model, &options).unwrap_err());
        assert_eq!(shown, expected, "{options:?}");
    }
}

#[test]
fn shards_merge_into_the_single_run_byte_for_byte() {
    let scratch = ScratchDir::new("truth-shards");
    let dir = scratch.path();
    let model = smooth(&image_model());
    // 14 pairs in batches of 4: batches 0..4, 4..8, 8..12, 12..14; three shards.
    let options = TruthOptions {
        count: 14,
        validation: 3,
        test: 2,
        guidance: 1.5,
        ..options()
    };
    let whole = dir.join("whole.safetensors");
    let single = write_pairs(&model, &options, &whole, &mut |_| {}).unwrap();

    let mut shards = Vec::new();
    for index in [3, 1, 2] {
        let shard = Shard { index, of: 3 };
        let path = dir.join(format!("shard-{index}.safetensors"));
        let sharded = TruthOptions {
            shard: Some(shard),
            ..options.clone()
        };
        let pairs = write_pairs(&model, &sharded, &path, &mut |_| {}).unwrap();
        assert_eq!(pairs.meta.shard.as_ref().unwrap().index, index);
        // A shard is not a ground truth by itself.
        let shown = format!("{:#}", Pairs::load(&path).unwrap_err());
        assert!(
            shown.contains(&format!("shard-{index}.safetensors"))
                && shown.contains(&format!("shard {index}/3"))
                && shown.contains("bns pairs merge"),
            "{shown}"
        );
        shards.push((path.clone(), Pairs::load_shard(&path).unwrap()));
    }
    let rows: Vec<(usize, usize)> = shards
        .iter()
        .map(|(_, p)| {
            let s = p.meta.shard.as_ref().unwrap();
            (s.start, s.end)
        })
        .collect();
    assert_eq!(rows, [(8, 14), (0, 4), (4, 8)]);

    let merged = crate::shard::merge(&shards).unwrap();
    let merged_path = dir.join("merged.safetensors");
    Pairs {
        meta: PairsMeta {
            seconds: single.meta.seconds,
            ..merged.meta.clone()
        },
        ..merged.clone()
    }
    .save(&merged_path)
    .unwrap();
    assert_eq!(
        std::fs::read(&merged_path).unwrap(),
        std::fs::read(&whole).unwrap(),
        "the merged file is the single run's, byte for byte, but for the seconds"
    );
    assert!(merged.meta.seconds > 0.0);

    // A missing shard, a shard given twice, a shard of another run, a whole file.
    let missing = format!("{:#}", crate::shard::merge(&shards[..2]).unwrap_err());
    assert!(
        missing.contains("shard 2/3 of this run is missing"),
        "{missing}"
    );
    let twice = vec![shards[0].clone(), shards[1].clone(), shards[1].clone()];
    let twice = format!("{:#}", crate::shard::merge(&twice).unwrap_err());
    assert!(
        twice.contains("shard 1/3 is given twice") && twice.contains("shard-1.safetensors"),
        "{twice}"
    );
    let other_path = dir.join("other-seed.safetensors");
    let other = TruthOptions {
        seed: 1,
        shard: Some(Shard { index: 2, of: 3 }),
        ..options.clone()
    };
    write_pairs(&model, &other, &other_path, &mut |_| {}).unwrap();
    let mixed = vec![
        shards[0].clone(),
        shards[1].clone(),
        (other_path.clone(), Pairs::load_shard(&other_path).unwrap()),
    ];
    let mixed = format!("{:#}", crate::shard::merge(&mixed).unwrap_err());
    assert!(
        mixed.contains("shards of different runs")
            && mixed.contains("other-seed.safetensors")
            && mixed.contains("seed 9")
            && mixed.contains("seed 1"),
        "{mixed}"
    );
    let with_whole = vec![(whole.clone(), Pairs::load_shard(&whole).unwrap())];
    let with_whole = format!("{:#}", crate::shard::merge(&with_whole).unwrap_err());
    assert!(
        with_whole.contains("whole.safetensors") && with_whole.contains("not a shard"),
        "{with_whole}"
    );

    // More shards than batches is refused before any work.
    let too_many = TruthOptions {
        shard: Some(Shard { index: 1, of: 5 }),
        ..options.clone()
    };
    let shown = format!(
        "{:#}",
        compute_pairs(&model, &too_many, &mut |_| {}).unwrap_err()
    );
    assert!(
        shown.contains("--shard 1/5") && shown.contains("only 4 batches,"),
        "{shown}"
    );
}

/// The truth of a tiny guided image model with candle's network and DOPRI5's state as a tensor on
/// `device`, against the reference (the runtime's network, DOPRI5 on the host): both are DOPRI5
/// at 1e-5 on networks that agree to ~1e-6, so the truths agree to 1e-4 and the NFE within 10%.
fn check_device_against_the_runtime(device: Device) {
    let model = smooth(&image_model());
    let options = TruthOptions {
        guidance: 2.0,
        ..options()
    };
    let reference = compute_pairs(&model, &options, &mut |_| {}).unwrap();
    let network = CandleNetwork::from_model(&model, &device).unwrap();
    let on_device = compute_with(
        &model,
        &options,
        &mut Field::Device(&network, device),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(on_device.noise, reference.noise);
    assert_eq!(on_device.labels, reference.labels);
    let worst = on_device
        .truth
        .iter()
        .zip(&reference.truth)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "worst relative difference {worst}");
    let nfe = (on_device.meta.mean_nfe - reference.meta.mean_nfe).abs();
    assert!(
        nfe <= 0.1 * reference.meta.mean_nfe,
        "mean NFE {} on the device, {} on the runtime",
        on_device.meta.mean_nfe,
        reference.meta.mean_nfe
    );
}

#[test]
fn the_device_field_agrees_with_the_runtime() {
    check_device_against_the_runtime(Device::Cpu);
}

/// On an NVIDIA GPU: compiled in every `--features cuda` build (`make cuda-check`), run on a GPU
/// machine with `cargo test -p distiller --features cuda -- --ignored gpu`.
#[cfg(feature = "cuda")]
mod gpu {
    use super::*;

    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn gpu_truth_agrees_with_the_runtime() {
        check_device_against_the_runtime(Device::new_cuda(0).unwrap());
    }
}

/// The page's distillation makes its pairs with the runtime (`web_sampler::truth`, batches of
/// `web_sampler::bns::job::TRUTH_BATCH`): they are `bns truth`'s first pairs, bit for bit, so
/// `bns solver measure` finds the page's validation figure on a pairs file of `bns truth`.
#[test]
fn the_runtimes_pairs_are_bns_truths_first_pairs() {
    use web_sampler::bns::job::TRUTH_BATCH;
    use web_sampler::truth::{pair_inputs, solve_rows, DEFAULT_TOLERANCE};
    let model = smooth(&image_model());
    let options = TruthOptions {
        count: 2 * TRUTH_BATCH + 5,
        validation: 10,
        test: 5,
        guidance: 1.5,
        batch: TRUTH_BATCH,
        ..options()
    };
    let pairs = compute_pairs(&model, &options, &mut |_| {}).unwrap();
    let count = 2 * TRUTH_BATCH;
    let (noise, labels) = pair_inputs(&model, options.seed, count);
    let dim = model.spec().data_dim();
    assert_eq!(noise, pairs.noise[..count * dim]);
    assert_eq!(labels, pairs.labels[..count]);
    for start in (0..count).step_by(TRUTH_BATCH) {
        let rows = start..start + TRUTH_BATCH;
        let (truth, _) = solve_rows(
            &model,
            &noise[rows.start * dim..rows.end * dim],
            &labels[rows.clone()],
            1.5,
            DEFAULT_TOLERANCE,
        )
        .unwrap();
        assert_eq!(truth, pairs.truth[rows.start * dim..rows.end * dim]);
    }
    assert_eq!(
        (DEFAULT_TOLERANCE.rtol, DEFAULT_TOLERANCE.atol),
        (options.rtol, options.atol)
    );
}
