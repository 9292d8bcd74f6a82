//! Components that bound training speed: each loss forward + backward on the W1 MLP
//! (3 × 256, batch 256: CFM, DDPM's ε-loss, denoising score matching, EDM's preconditioned
//! denoiser, MeanFlow with its exact JVP) and the VAE's negative ELBO (MLP VAE on the 8×8
//! digits, batch 256), workload W3's MLP training step, the minibatch OT couplings (exact assignment and Sinkhorn at 256 and
//! 1,024 points), and the image networks' forward passes (U-Net and DiT on 28×28, batch 32).
//!
//! ```text
//! cargo bench --bench components
//! ```

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use flowforge::data::{Toy2d, rng, standard_normal};
use flowforge::losses::RegressionLoss;
use flowforge::losses::coupling::{Coupling, sinkhorn_plan, squared_distances};
use flowforge::losses::edm::EdmPreconditioned;
use flowforge::losses::elbo::{Elbo, Likelihood, reparameterize};
use flowforge::losses::meanflow::{AdaptiveWeight, TimePairSampling, meanflow_loss};
use flowforge::losses::time_sampling::{TimeSampling, Weighting};
use flowforge::metrics::linear_sum_assignment;
use flowforge::nets::{DitConfig, MlpConfig, MlpVaeConfig, UNetConfig, VariationalAutoencoder, predicting};
use flowforge::paths::{AffinePath, CondOt, DiscreteScheduleConfig, EdmConfig, VpConfig};
use flowforge::train::FusedAdam;
use flowforge::{Condition, Noise, Score, Velocity};

fn losses(c: &mut Criterion) {
    // The first group runs first: make this thread a compute thread before rayon is used.
    flowforge::threads::compute_on_calling_thread();
    let device: Device = flowforge::default_device().autodiff();
    let batch = 256;
    let mut r = rng(0);
    let x1 = Toy2d::moons().sample_tensor(batch, &mut r, &device).expect("moons");
    let x0 = standard_normal([batch, 2], &mut r, &device);
    let mut group = c.benchmark_group("loss_forward_backward");
    let cfm_net = MlpConfig::new(2).init(&device).expect("mlp");
    let condot = AffinePath::new(CondOt::default());
    let t = TimeSampling::default().sample(batch, &mut r, &CondOt::default()).expect("times");
    group.bench_function("cfm", |b| {
        b.iter(|| {
            let loss = RegressionLoss::new(condot.clone()).loss(&predicting::<Velocity, _>(&cfm_net), x0.clone(), x1.clone(), None, &t, &Condition::none()).expect("loss");
            loss.backward()
        })
    });
    let schedule = DiscreteScheduleConfig::new().init().expect("schedule");
    let ddpm = AffinePath::new(schedule.clone());
    let levels = TimeSampling::DiscreteUniform { num_train_timesteps: 1000 }.sample(batch, &mut r, &schedule).expect("levels");
    group.bench_function("ddpm_eps", |b| {
        b.iter(|| {
            let loss = RegressionLoss::new(ddpm.clone()).loss(&predicting::<Noise, _>(&cfm_net), x0.clone(), x1.clone(), None, &levels, &Condition::none()).expect("loss");
            loss.backward()
        })
    });
    let vp = AffinePath::new(VpConfig::new().init().expect("vp schedule"));
    let vp_times = TimeSampling::default().sample(batch, &mut r, vp.schedule()).expect("times");
    group.bench_function("dsm_score_vp", |b| {
        b.iter(|| {
            let loss = RegressionLoss::new(vp.clone()).loss(&predicting::<Score, _>(&cfm_net), x0.clone(), x1.clone(), None, &vp_times, &Condition::none()).expect("loss");
            loss.backward()
        })
    });
    let edm_schedule = EdmConfig::new().init().expect("edm schedule");
    let edm = AffinePath::new(edm_schedule);
    let sigma_data = 0.5;
    let edm_times = TimeSampling::edm().sample(batch, &mut r, &edm_schedule).expect("noise levels");
    group.bench_function("edm_preconditioned_denoiser", |b| {
        b.iter(|| {
            let denoiser = EdmPreconditioned::new(&cfm_net, edm_schedule, sigma_data).expect("preconditioning");
            let objective = RegressionLoss::new(edm.clone()).with_weighting(Weighting::Edm { sigma_data });
            objective.loss(&denoiser, x0.clone(), x1.clone(), None, &edm_times, &Condition::none()).expect("loss").backward()
        })
    });
    let digits = flowforge::data::images::bundled_digits().expect("bundled digits");
    let (images, _) = digits.batch(&digits.sample_indices(batch, &mut r), &device).expect("digits batch");
    let pixels = flowforge::data::images::to_unit_range(images);
    let vae = MlpVaeConfig::new(pixels.dims()[1]).init(&device).expect("vae");
    let eps = standard_normal([batch, vae.latent_dim()], &mut r, &device);
    group.bench_function("elbo_mlp_vae_digits8x8", |b| {
        b.iter(|| {
            let (mu, logvar) = vae.encode(pixels.clone()).expect("encode");
            let z = reparameterize(mu.clone(), logvar.clone(), eps.clone()).expect("reparameterize");
            let terms = Elbo { likelihood: Likelihood::Bernoulli, beta: 1.0 }.terms(pixels.clone(), vae.decode(z).expect("decode"), mu, logvar).expect("elbo");
            terms.loss.backward()
        })
    });
    let mf_net = MlpConfig::new(2).with_time_inputs(2).init(&device).expect("mlp");
    let (a, b_times) = TimePairSampling::default().sample(batch, &mut r).expect("pairs");
    let x_a = condot.point(x0.clone(), x1.clone(), &a).expect("point");
    group.bench_function("meanflow_exact_jvp", |b| {
        b.iter(|| {
            let loss = meanflow_loss(&mf_net, x_a.clone(), x1.clone() - x0.clone(), &a, &b_times, &Condition::none(), AdaptiveWeight::default()).expect("loss");
            loss.backward()
        })
    });
    group.finish();
}

/// W3 of `../shared/bench/WORKLOADS.md`: one Adam step of the W1 MLP on fixed inputs
/// (forward, MSE, backward, update) at three batch sizes, and the forward pass at 65,536.
fn mlp_step(c: &mut Criterion) {
    let plain = flowforge::default_device();
    let device = plain.clone().autodiff();
    let mut group = c.benchmark_group("w3_mlp_step");
    group.sample_size(10);
    for batch in [256, 4096, 65536] {
        let mut r = rng(4);
        let x = standard_normal([batch, 2], &mut r, &device);
        let t = Tensor::<2>::random([batch, 1], burn::tensor::Distribution::Uniform(0.0, 1.0), &device);
        let target = standard_normal([batch, 2], &mut r, &device);
        let mut model = Some(MlpConfig::new(2).init(&device).expect("mlp"));
        let mut optimizer = FusedAdam::default().into_module_optimizer();
        group.bench_with_input(BenchmarkId::new("train", batch), &batch, |b, _| {
            b.iter(|| {
                let m = model.take().expect("model");
                let loss = (m.forward(x.clone(), std::slice::from_ref(&t)).expect("forward") - target.clone()).square().mean();
                let grads = GradientsParams::from_grads(loss.backward(), &m);
                model = Some(optimizer.step(1e-3, m, grads));
            })
        });
    }
    let mlp = MlpConfig::new(2).init(&plain).expect("mlp");
    let x = standard_normal([65536, 2], &mut rng(5), &plain);
    let t = Tensor::<2>::full([65536, 1], 0.5, &plain);
    group.bench_function("forward/65536", |b| b.iter(|| mlp.forward(x.clone(), std::slice::from_ref(&t)).expect("forward").into_data()));
    group.finish();
}

fn couplings(c: &mut Criterion) {
    let device = flowforge::default_device();
    let mut group = c.benchmark_group("ot_coupling");
    group.sample_size(10);
    for n in [256, 1024] {
        let mut r = rng(1);
        let x0 = standard_normal([n, 2], &mut r, &device);
        let x1 = Toy2d::moons().sample_tensor(n, &mut r, &device).expect("moons");
        let cost: Vec<f64> = squared_distances(&x0, &x1).try_into_vec_as::<f64>().expect("host cost");
        group.bench_with_input(BenchmarkId::new("assignment", n), &n, |b, &n| b.iter(|| linear_sum_assignment(&cost, n).expect("assignment")));
        group.bench_with_input(BenchmarkId::new("exact_ot_couple", n), &n, |b, _| b.iter(|| Coupling::ExactOt.couple(x0.clone(), x1.clone(), None, &mut rng(2)).expect("couple")));
        group.bench_with_input(BenchmarkId::new("sinkhorn_sb_0.2", n), &n, |b, &n| b.iter(|| sinkhorn_plan(&cost, n, n, 0.08, 1000, 1e-6).expect("plan")));
    }
    group.finish();
}

fn image_networks(c: &mut Criterion) {
    let device = flowforge::default_device();
    let mut group = c.benchmark_group("image_network_forward");
    group.sample_size(10);
    let x = standard_normal([32, 1, 28, 28], &mut rng(3), &device);
    let t = Tensor::<2>::full([32, 1], 0.5, &device);
    let unet = UNetConfig::new(1).init(&device).expect("unet");
    group.bench_function("unet_28x28_b32", |b| b.iter(|| unet.forward(x.clone(), std::slice::from_ref(&t), &Condition::none()).expect("forward")));
    let dit = DitConfig::new(1, 28).init(&device).expect("dit");
    group.bench_function("dit_28x28_p4_b32", |b| b.iter(|| dit.forward(x.clone(), std::slice::from_ref(&t), &Condition::none()).expect("forward")));
    group.finish();
}

criterion_group!(benches, losses, mlp_step, couplings, image_networks);
criterion_main!(benches);
