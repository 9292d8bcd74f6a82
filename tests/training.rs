//! The training loop: exact resume, NaN handling, checkpoints of another architecture, EMA.

mod common;

use burn::tensor::{Device, Tensor};
use common::*;
use flowforge::core::tensor::tensor_to_vec;
use flowforge::data::{Toy2d, standard_normal};
use flowforge::losses::RegressionLoss;
use flowforge::losses::time_sampling::TimeSampling;
use flowforge::nets::{Mlp, MlpConfig, predicting};
use flowforge::paths::{AffinePath, CondOt};
use flowforge::train::{Trainer, TrainerConfig, checkpoint};
use flowforge::{Condition, Error, Velocity};
use rand::rngs::StdRng;

fn autodiff_device() -> Device {
    device().autodiff()
}

fn small_mlp(hidden: usize) -> Mlp {
    MlpConfig::new(2).with_hidden_dim(hidden).with_hidden_layers(2).init(&autodiff_device()).unwrap()
}

/// One CFM step's loss on fresh moons, drawn from the step's generator.
fn cfm_loss(model: &Mlp, rng: &mut StdRng, _step: usize) -> flowforge::Result<Tensor<1>> {
    let dev = autodiff_device();
    let x1 = Toy2d::moons().sample_tensor(64, rng, &dev)?;
    let x0 = standard_normal([64, 2], rng, &dev);
    let t = TimeSampling::default().sample(64, rng, &CondOt::default())?;
    RegressionLoss::new(AffinePath::new(CondOt::default())).loss(&predicting::<Velocity, _>(model), x0, x1, None, &t, &Condition::none())
}

fn config(steps: usize) -> TrainerConfig {
    TrainerConfig::new(steps).with_ema_decay(Some(0.9)).with_checkpoint_every(Some(5)).with_seed(3).with_progress(false)
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("flowforge-training-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn params(model: &Mlp) -> Vec<f64> {
    use burn::module::{Module, ModuleVisitor, Param};
    struct Collect(Vec<f64>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.extend(tensor_to_vec(p.val().inner()));
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

#[test]
fn resuming_reproduces_the_uninterrupted_run() {
    // Both runs start from the same initial weights.
    let initial = small_mlp(32);
    // Uninterrupted: 20 steps.
    let dir_a = scratch("uninterrupted");
    let mut a = Trainer::resume_or_new(config(20), initial.clone(), &dir_a).unwrap();
    let full = a.fit(cfm_loss).unwrap().losses;
    assert_eq!(full.len(), 20);

    // Interrupted after 10 steps (a run configured for 10), then resumed to 20 from disk with a
    // freshly initialised model.
    let dir_b = scratch("interrupted");
    let mut first = Trainer::resume_or_new(config(10), initial, &dir_b).unwrap();
    let head = first.fit(cfm_loss).unwrap().losses;
    drop(first);
    let mut second = Trainer::resume_or_new(config(20), small_mlp(32), &dir_b).unwrap();
    assert_eq!(second.step(), 10);
    let tail = second.fit(cfm_loss).unwrap().losses;
    let resumed: Vec<f64> = head.into_iter().chain(tail).collect();
    for (i, (x, y)) in full.iter().zip(&resumed).enumerate() {
        assert!((x - y).abs() <= 1e-6 * x.abs(), "step {i}: {x} (uninterrupted) vs {y} (resumed)");
    }
    // The weights and their EMA agree too.
    let (pa, pb) = (params(a.model()), params(second.model()));
    let max = pa.iter().zip(&pb).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(max < 1e-5, "weights differ by {max}");
    let (ea, eb) = (params(a.ema().unwrap()), params(second.ema().unwrap()));
    let max = ea.iter().zip(&eb).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(max < 1e-5, "EMA weights differ by {max}");
    // Only the newest two checkpoints are kept.
    let kept: Vec<_> = std::fs::read_dir(&dir_a).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("step-")).collect();
    assert_eq!(kept.len(), 2);
    // The loss went down over 20 steps (it is a working optimiser).
    assert!(full[15..].iter().sum::<f64>() < full[..5].iter().sum::<f64>());
    let _ = std::fs::remove_dir_all(dir_a);
    let _ = std::fs::remove_dir_all(dir_b);
}

#[test]
fn a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let dir = scratch("nan");
    let mut trainer = Trainer::resume_or_new(config(20), small_mlp(16), &dir).unwrap();
    let err = trainer
        .fit(|model, rng, step| {
            let loss = cfm_loss(model, rng, step)?;
            Ok(if step == 7 { loss.mul_scalar(f64::NAN) } else { loss })
        })
        .unwrap_err();
    assert!(matches!(err, Error::NonFiniteLoss { step: 7, .. }), "{err}");
    assert!(err.to_string().contains("step 7"));
    assert_eq!(trainer.step(), 7, "no update was made at the failing step");
    let latest = checkpoint::latest(&dir).unwrap().unwrap();
    assert_eq!(checkpoint::read_state(&latest).unwrap().step, 5);
    // The surviving checkpoint loads and resumes.
    let resumed = Trainer::resume_or_new(config(20), small_mlp(16), &dir).unwrap();
    assert_eq!(resumed.step(), 5);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_checkpoint_of_another_architecture_is_a_typed_error() {
    let dir = scratch("architecture");
    let mut trainer = Trainer::resume_or_new(config(5), small_mlp(16), &dir).unwrap();
    trainer.fit(cfm_loss).unwrap();
    let err = Trainer::resume_or_new(config(10), small_mlp(32), &dir).err().expect("a mismatch");
    match &err {
        Error::Checkpoint { path, reason } => {
            assert!(path.ends_with("model.bpk"), "{path}");
            assert!(reason.contains("architecture"), "{reason}");
        }
        other => panic!("expected a checkpoint error, got {other}"),
    }
    // A dangling `latest` pointer is reported, not followed.
    std::fs::write(dir.join("latest"), "step-99999999").unwrap();
    assert!(matches!(checkpoint::latest(&dir), Err(Error::Checkpoint { .. })));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_trainer_configs_are_typed_errors() {
    assert!(matches!(Trainer::new(TrainerConfig::new(0), small_mlp(8)), Err(Error::InvalidCount { name: "steps", .. })));
    assert!(matches!(Trainer::new(TrainerConfig::new(5).with_learning_rate(-1.0), small_mlp(8)), Err(Error::InvalidParameter { name: "learning_rate", .. })));
    assert!(matches!(Trainer::new(TrainerConfig::new(5).with_ema_decay(Some(1.0)), small_mlp(8)), Err(Error::InvalidParameter { name: "ema_decay", .. })));
}
