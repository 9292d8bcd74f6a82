//! One sampler step per solver on a 2-layer MLP velocity/denoiser, batch 4096 (issue: samplers).
//!
//! ```text
//! cargo bench --bench sampler_step
//! ```

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use flowforge::data::{rng, standard_normal};
use flowforge::paths::{AffinePath, CondOt, VpConfig};
use flowforge::samplers::*;
use flowforge::{Condition, Model, Predicted, Result, Times, Velocity};

/// `v(x, t) = L2(SiLU(L1([x, t])))`, 3 → 256 → 2.
#[derive(Module, Debug)]
struct Mlp {
    l1: Linear,
    l2: Linear,
}

impl Mlp {
    fn new(device: &Device) -> Self {
        Self { l1: LinearConfig::new(3, 256).init(device), l2: LinearConfig::new(256, 2).init(device) }
    }
}

impl Model<2> for Mlp {
    type Prediction = Velocity;
    fn predict(&self, x: Tensor<2>, t: &Times, _c: &Condition) -> Result<Predicted<Velocity, 2>> {
        let [batch, _] = x.dims();
        let t = t.to_tensor(&x.device()).reshape([batch, 1]);
        Ok(Predicted::new(self.l2.forward(silu(self.l1.forward(Tensor::cat(vec![x, t], 1))))))
    }
}

fn bench(c: &mut Criterion) {
    flowforge::threads::compute_on_calling_thread();
    let device = flowforge::default_device();
    let mlp = Mlp::new(&device);
    let x = standard_normal([4096, 2], &mut rng(0), &device);
    let condot = AffinePath::new(CondOt::default());
    let vp = AffinePath::new(VpConfig::new().init().unwrap());
    let on_condot = PathModel::new(&mlp, &condot);
    let on_vp = PathModel::new(&mlp, &vp);
    let at = StepIndex { step: 1, steps: 10 };
    let mut group = c.benchmark_group("sampler step, 2-layer MLP 3-256-2, batch 4096");
    group.sample_size(30);
    macro_rules! step {
        ($name:expr, $model:expr, $sampler:expr, $noise:expr) => {
            group.bench_function($name, |b| {
                let sampler = $sampler;
                let mut noise = $noise;
                b.iter(|| {
                    let mut state = Default::default();
                    let out = Sampler::<_, 2>::step(&sampler, $model, x.clone(), 0.4, 0.5, at, &mut state, &mut noise).unwrap();
                    // Force execution (backends may be lazy).
                    out.into_data()
                })
            });
        };
    }
    group.bench_function("model forward alone (baseline)", |b| {
        let t = Times::shared(0.4, 4096).unwrap();
        b.iter(|| mlp.predict(x.clone(), &t, &Condition::none()).unwrap().into_tensor().into_data())
    });
    step!("euler", &on_condot, Euler, NoNoise);
    step!("midpoint", &on_condot, Midpoint, NoNoise);
    step!("heun", &on_condot, Heun, NoNoise);
    step!("rk4", &on_condot, Rk4, NoNoise);
    step!("heun in sigma/alpha (k-diffusion)", &on_vp, NoiseToSignal(Heun), NoNoise);
    step!("ddim eta=0", &on_vp, Ddim::new(0.0).unwrap(), NoNoise);
    step!("ddim eta=1", &on_vp, Ddim::new(1.0).unwrap(), SeededNoise::new(1));
    step!("ddpm ancestral", &on_vp, Ddpm::default(), SeededNoise::new(2));
    step!("dpm-solver++(2m)", &on_vp, DpmSolverPp2m, NoNoise);
    step!("edm stochastic (churn)", &on_vp, EdmStochastic::new(40.0, 0.0, f64::INFINITY, 1.0).unwrap(), SeededNoise::new(3));
    step!("euler-maruyama", &on_vp, EulerMaruyama::new(Diffusion::ReverseDiffusion { scale: 1.0 }).unwrap(), SeededNoise::new(4));
    group.bench_function("dopri5 one accepted step (rtol 1e-3)", |b| {
        let solver = Dopri5::new(PidController::new(1e-3, 1e-3).unwrap().with_dt0(0.1));
        b.iter(|| solver.solve(&on_condot, x.clone(), 0.4, 0.5, &SaveAt::Final, None).unwrap().solution.x.into_data())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
