//! The sampler API's contracts: observers, save-at, reproducible noise, the empirical oracle.

mod common;

use burn::tensor::Tensor;
use common::*;
use flowforge::core::tensor::{tensor_from_rows, tensor_to_rows, tensor_to_vec};
use flowforge::data::{rng, standard_normal};
use flowforge::paths::*;
use flowforge::samplers::oracle::{EmpiricalOracle, MixtureOracle};
use flowforge::samplers::*;
use flowforge::prelude::velocity;
use flowforge::{Times, model_fn};

#[test]
fn observer_sees_every_step_and_save_at_records_the_trajectory() {
    let path = AffinePath::new(CondOt::default());
    let field = model_fn(|x: Tensor<2>, _t: &Times| velocity(x.mul_scalar(-1.0)));
    let model = PathModel::new(&field, &path);
    let x = tensor_from_rows(&[vec![1.0, 2.0]], &device());
    let grid = TimeGrid::uniform(5).unwrap();
    let mut seen = Vec::new();
    let mut observer = |info: &StepInfo| seen.push((info.step, info.t_next, info.evaluations));
    let solution = solve(&model, &Heun, x, &grid, &mut NoNoise, SolveOptions::default().save_at(SaveAt::Steps).observer(&mut observer)).unwrap();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[4], (4, 1.0, 10));
    assert_eq!(solution.evaluations, 10);
    assert_eq!(solution.saved.len(), 6);
    assert_eq!(solution.saved[0].0, 0.0);
    // Each saved state is Heun's exact recurrence for dx/dt = −x: factor (1 − h + h²/2) a step.
    let factor: f64 = 1.0 - 0.2 + 0.02;
    let last = tensor_to_vec(solution.saved[5].1.clone());
    assert!((last[0] - factor.powi(5)).abs() < 1e-5);
    let only = SolveOptions::default().save_at(SaveAt::Times(vec![0.4, 1.0]));
    let solution = solve(&model, &Heun, tensor_from_rows(&[vec![1.0, 2.0]], &device()), &grid, &mut NoNoise, only).unwrap();
    assert_eq!(solution.saved.iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec![0.4, 1.0]);
}

#[test]
fn seeded_noise_makes_stochastic_runs_reproducible() {
    let schedule = VpConfig::new().init().unwrap();
    let path = AffinePath::new(schedule);
    let oracle = MixtureOracle::new(schedule, vec![1.0, 1.0], vec![vec![-1.0, 0.0], vec![1.0, 0.0]], vec![0.2, 0.2]).unwrap();
    let model = PathModel::new(&oracle, &path);
    let x = standard_normal([32, 2], &mut rng(0), &device());
    let grid = TimeGrid::uniform(20).unwrap();
    let run = |seed| tensor_to_vec(solve(&model, &Ddpm::default(), x.clone(), &grid, &mut SeededNoise::new(seed), SolveOptions::default()).unwrap().x);
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn the_empirical_oracle_is_a_mixture_of_point_masses_and_memorises() {
    let dev = device();
    let data = vec![vec![-2.0, 1.0], vec![0.5, 0.5], vec![3.0, -1.0]];
    let schedule = CosineConfig::new().init().unwrap();
    let empirical = EmpiricalOracle::new(schedule, tensor_from_rows(&data, &dev)).unwrap();
    let mixture = MixtureOracle::new(schedule, vec![1.0; 3], data.clone(), vec![0.0; 3]).unwrap();
    let x = standard_normal([16, 2], &mut rng(4), &dev);
    for t in [0.2, 0.6, 0.9] {
        let times = Times::shared(t, 16).unwrap();
        let a = tensor_to_vec(empirical.denoise(x.clone(), &times).unwrap());
        let b = tensor_to_vec(mixture.denoise(x.clone(), &times).unwrap());
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-4, "t = {t}: {p} vs {q}");
        }
    }
    // Sampling its exact flow reproduces training points.
    let path = AffinePath::new(schedule);
    let model = PathModel::new(&empirical, &path);
    let grid = TimeGrid::uniform_between(0.0, 0.999, 200).unwrap();
    let out = solve(&model, &Ddim::new(0.0).unwrap(), x, &grid, &mut NoNoise, SolveOptions::default()).unwrap();
    let last = model.evaluate(out.x, 0.999).unwrap().data().unwrap();
    for p in tensor_to_rows(last) {
        let nearest = data.iter().map(|d| ((d[0] - p[0]).powi(2) + (d[1] - p[1]).powi(2)).sqrt()).fold(f64::INFINITY, f64::min);
        assert!(nearest < 1e-3, "sample {p:?} is {nearest} from the data");
    }
}

/// `solve_by_row_blocks` on the W2 network (an untrained 3 × 256 SiLU MLP predicting noise on
/// the DDPM schedule) and 1,001 points: a deterministic sampler gives `solve`'s values to the
/// bit, final and saved states, for uneven blocks and one block per thread; a stochastic one
/// draws block `b`'s noise from `SeededNoise::for_block(seed, b)`, so one block is `solve`
/// with `SeededNoise::new(seed)` and each block is `solve` on its rows with its own source.
#[test]
fn solving_by_row_blocks_is_solve_on_each_block() {
    use flowforge::nets::{MlpConfig, predicting};
    use flowforge::{Condition, Noise};
    let d = device();
    d.seed(3);
    let net = MlpConfig::new(2).init(&d).unwrap();
    let eps = predicting::<Noise, _>(&net);
    let schedule = DiscreteScheduleConfig::new().init().unwrap();
    let path = AffinePath::new(schedule.clone());
    let field = |_rows: std::ops::Range<usize>| Ok(PathModel::new(&eps, &path).with_condition(Condition::none()));
    let x = standard_normal([1001, 2], &mut rng(5), &d);
    let bits = |t: &Tensor<2>| tensor_to_vec(t.clone()).iter().map(|v| (*v as f32).to_bits()).collect::<Vec<_>>();

    let grid = TimeGrid::ddim(DdimSpacing::Leading { steps_offset: 0 }, 10, schedule.timesteps(), true).unwrap();
    let whole = solve(&field(0..1001).unwrap(), &Ddim::new(0.0).unwrap(), x.clone(), &grid, &mut NoNoise, SolveOptions::default().save_at(SaveAt::Steps)).unwrap();
    for blocks in [RowBlocks::Rows(300), RowBlocks::Rows(1001), RowBlocks::OnePerThread] {
        let split = solve_by_row_blocks(field, &Ddim::new(0.0).unwrap(), x.clone(), &grid, |_| NoNoise, blocks, SaveAt::Steps).unwrap();
        assert!(bits(&split.x) == bits(&whole.x), "{blocks:?}");
        assert_eq!((split.evaluations, split.steps, split.saved.len()), (10, 10, 11), "{blocks:?}");
        for ((t, a), (u, b)) in split.saved.iter().zip(&whole.saved) {
            assert!(t == u && bits(a) == bits(b), "{blocks:?} at t = {t}");
        }
    }

    let grid = TimeGrid::ddim(DdimSpacing::Leading { steps_offset: 0 }, 20, schedule.timesteps(), true).unwrap();
    let noise = |b| SeededNoise::for_block(7, b);
    let one = solve_by_row_blocks(field, &Ddpm::default(), x.clone(), &grid, noise, RowBlocks::Rows(2000), SaveAt::Final).unwrap();
    let whole = solve(&field(0..1001).unwrap(), &Ddpm::default(), x.clone(), &grid, &mut SeededNoise::new(7), SolveOptions::default()).unwrap();
    assert!(bits(&one.x) == bits(&whole.x), "one block");
    let split = solve_by_row_blocks(field, &Ddpm::default(), x.clone(), &grid, noise, RowBlocks::Rows(300), SaveAt::Final).unwrap();
    assert_eq!(split.x.dims(), [1001, 2]);
    for (b, rows) in [(0usize, 0..300usize), (2, 600..900), (3, 900..1001)] {
        let alone = solve(&field(rows.clone()).unwrap(), &Ddpm::default(), x.clone().narrow(0, rows.start, rows.len()), &grid, &mut noise(b), SolveOptions::default()).unwrap();
        assert!(bits(&split.x.clone().narrow(0, rows.start, rows.len())) == bits(&alone.x), "block {b}");
    }
    // Each block its own stream: block 1's rows are not what `solve` on the whole batch drew.
    assert!(bits(&split.x.clone().narrow(0, 300, 300)) != bits(&whole.x.clone().narrow(0, 300, 300)), "block 1 drew solve's stream");

    let empty = solve_by_row_blocks(field, &Ddpm::default(), x, &grid, noise, RowBlocks::Rows(0), SaveAt::Final);
    assert!(matches!(empty, Err(flowforge::Error::InvalidParameter { name: "rows per block", .. })), "{:?}", empty.err());
}

/// A class-conditional, guided field by row blocks: each block's field takes its rows' labels
/// (`Condition::rows`), and the blocks give `solve`'s samples on the whole batch, bit for bit
/// (an analytic labelled mixture, classifier-free guidance at scale 3, Euler-30).
#[test]
fn row_blocks_slice_per_row_conditioning() {
    use burn::tensor::{Int, TensorData};
    use flowforge::guidance::{CfgConvention, ClassifierFreeGuidance};
    use flowforge::samplers::oracle::LabelledMixtureOracle;
    use flowforge::{Condition, Velocity};
    let d = device();
    let oracle = LabelledMixtureOracle::new(CondOt::default(), vec![0.5, 0.5], vec![vec![-1.0, 0.0], vec![1.0, 0.0]], vec![0.8, 0.8], vec![0, 1]).unwrap().predicting::<Velocity>();
    let guided = ClassifierFreeGuidance::new(&oracle, 3.0, CfgConvention::Interpolate, 2).unwrap();
    let path = AffinePath::new(CondOt::default());
    let labels = Tensor::<1, Int>::from_data(TensorData::new((0..301).map(|i| (i % 3 % 2) as i64).collect::<Vec<i64>>(), [301]), &d);
    let condition = Condition::labels(labels);
    assert_eq!(condition.rows(100..250).unwrap().labels.unwrap().into_data().convert::<i64>().try_to_vec::<i64>().unwrap(), (100..250).map(|i| (i % 3 % 2) as i64).collect::<Vec<_>>());
    assert!(matches!(condition.rows(250..302), Err(flowforge::Error::ShapeMismatch { .. })), "a block past the labels");
    let x0 = standard_normal([301, 2], &mut rng(4), &d);
    let grid = TimeGrid::uniform(30).unwrap();
    let whole = solve(&PathModel::new(&guided, &path).with_condition(condition.clone()), &Euler, x0.clone(), &grid, &mut NoNoise, SolveOptions::default()).unwrap();
    let field = |rows: std::ops::Range<usize>| Ok(PathModel::new(&guided, &path).with_condition(condition.rows(rows)?));
    let split = solve_by_row_blocks(field, &Euler, x0, &grid, |_| NoNoise, RowBlocks::Rows(100), SaveAt::Final).unwrap();
    let bits = |t: Tensor<2>| tensor_to_vec(t).iter().map(|v| (*v as f32).to_bits()).collect::<Vec<_>>();
    assert!(bits(split.x) == bits(whole.x), "blocks of 100 rows against the whole batch");
}
