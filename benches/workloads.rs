//! The benchmark workloads of `../shared/bench/WORKLOADS.md`, printed as one JSON line per
//! workload with the field names of `torch_baseline.py`, so the two programs can be run one
//! after the other on the same machine and compared as ratios.
//!
//! ```text
//! cargo bench --bench workloads                      # release profile
//! cargo bench --profile dev --bench workloads        # dependencies optimised, no release build
//! cargo bench --bench workloads -- --only cfm_moons  # one workload
//! cargo bench --bench workloads -- --seed 1          # W1/W2 with every seed shifted by 1
//! cargo bench --bench workloads --features wgpu -- --device wgpu  # on another backend (cuda needs the network to build)
//! cargo bench --bench workloads -- --system-allocator  # without flowforge::allocator::retain_freed_memory
//! cargo bench --bench workloads -- --caller-outside-pool  # without flowforge::threads::compute_on_calling_thread
//! cargo bench --bench workloads -- --no-amx              # without flowforge::kernels::f32_matmul_on_amx
//! cargo bench --bench workloads -- --workers-sleep     # without flowforge::threads::keep_workers_polling
//! cargo bench --bench workloads -- --whole-batch       # sampling by `solve` on the whole batch, not a block of rows per thread
//! ```
//!
//! W0 `gemm_peak` (1,024³ and 2,048³ f32 GEMM by burn's matmul and by flowforge's kernel; the
//! faster is the peak W3 is held to),
//! W1 `cfm_moons` and W2 `ddpm_moons` (3,000 Adam steps of the W1 MLP at batch 256, then
//! Euler-100 / RK4-25, DDPM-1000 / DDIM-50 on 10,000 points, exact W2 and energy distance on
//! 2,000 against fresh moons), W3 `mlp_step_micro` (median training step at batch 256, 4,096 and
//! 65,536, forward at 65,536) and W4 `unet_digits_step` (the workload's U-Net, 781,281
//! parameters, CFM steps at batch 128 on the 8×8 digits upsampled to 16×16; Euler-100 on 256
//! images).

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
use flowforge::data::{Toy2d, points_to_tensor, rng, standard_normal, tensor_to_points};
use flowforge::losses::RegressionLoss;
use flowforge::losses::time_sampling::TimeSampling;
use flowforge::metrics::{as_rows, energy_distance, wasserstein2};
use flowforge::nets::{Mlp, MlpConfig, UNetConfig, predicting};
use flowforge::paths::{AffinePath, CondOt, DiscreteScheduleConfig};
use flowforge::samplers::{Ddim, DdimSpacing, Ddpm, Euler, NoNoise, NoiseSource, PathModel, Rk4, RowBlocks, Sampler, SaveAt, SeededNoise, SolveOptions, TimeGrid, VectorField, solve, solve_by_row_blocks};
use flowforge::train::{FusedAdam, Trainer, TrainerConfig};
use flowforge::{Condition, Noise, Velocity};
use std::time::Instant;

type Fields = Vec<(String, String)>;

/// `--seed N` shifts every seed of W1/W2 (model initialisation, training noise, sampling noise)
/// by N, for the quality-at-equal-budget average over seeds; 0 is the workload's own seeds.
static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `--whole-batch`: sample with `solve` on the whole batch instead of a block of rows per thread.
static WHOLE_BATCH: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The final state of `sampler` from `x` over `grid`: a block of rows per thread
/// (`solve_by_row_blocks`, block `b` drawing from `noise(b)`), or with `--whole-batch` one
/// `solve` of the whole batch drawing from `noise(0)`.
fn sample<F, P, N, const D: usize>(field: impl Fn(std::ops::Range<usize>) -> flowforge::Result<F> + Sync, sampler: &P, x: Tensor<D>, grid: &TimeGrid, noise: impl Fn(usize) -> N + Sync) -> flowforge::Result<Tensor<D>>
where
    F: VectorField<D>,
    P: Sampler<F, D> + Sync,
    N: NoiseSource,
{
    if WHOLE_BATCH.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(solve(&field(0..x.dims()[0])?, sampler, x, grid, &mut noise(0), SolveOptions::default())?.x);
    }
    Ok(solve_by_row_blocks(field, sampler, x, grid, noise, RowBlocks::OnePerThread, SaveAt::Final)?.x)
}

fn seed(base: u64) -> u64 {
    base + SEED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Peak resident set size of this process so far (Linux `VmHWM`), MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn field(fields: &mut Fields, name: &str, value: impl std::fmt::Display) {
    fields.push((name.to_owned(), value.to_string()));
}

fn print_json(workload: &str, fields: &Fields) {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    println!("{{\"workload\":\"{workload}\",{}}}", body.join(","));
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// W2 and energy of the first 2,000 points against `make_moons(2000)` (seed 1001), and the floor.
fn quality(fields: &mut Fields, prefix: &str, points: &[[f64; 2]]) -> flowforge::Result<()> {
    let target = as_rows(&Toy2d::make_moons(2000, 0.05, &mut rng(1001))?);
    let generated = as_rows(&points[..2000]);
    field(fields, &format!("{prefix}_w2"), format!("{:.6}", wasserstein2(&generated, &target)?));
    field(fields, &format!("{prefix}_energy"), format!("{:.6}", energy_distance(&generated, &target)?));
    field(fields, &format!("{prefix}_has_nan"), points.iter().any(|p| !p[0].is_finite() || !p[1].is_finite()));
    Ok(())
}

/// 3,000 steps of the W1 MLP at batch 256 with `loss`, recording the workload's timing fields.
fn train(fields: &mut Fields, device: &Device, mut loss: impl FnMut(&Mlp, &Tensor<2>, &mut rand::rngs::StdRng) -> flowforge::Result<Tensor<1>>) -> flowforge::Result<Mlp> {
    let (steps, batch) = (3000, 256);
    let train_device = device.clone().autodiff();
    device.seed(seed(0));
    let mlp = MlpConfig::new(2).init(&train_device)?;
    field(fields, "n_params", mlp.num_params());
    // The workload's pool: make_moons(3000·256), step i uses rows [256 i, 256 i + 256).
    let pool = points_to_tensor(&Toy2d::make_moons(steps * batch, 0.05, &mut rng(42))?, &train_device);
    let mut trainer = Trainer::new(TrainerConfig::new(steps).with_learning_rate(1e-3).with_seed(seed(1)).with_progress(false), mlp)?;
    let mut step_times = Vec::with_capacity(steps);
    let start = Instant::now();
    let mut last = Instant::now();
    let report = trainer.fit_with(
        |model, r, step| {
            let x1 = pool.clone().slice([step * batch..(step + 1) * batch, 0..2]);
            loss(model, &x1, r)
        },
        |_, _| {
            step_times.push(last.elapsed().as_secs_f64());
            last = Instant::now();
        },
    )?;
    let total = start.elapsed().as_secs_f64();
    field(fields, "train_steps", steps);
    field(fields, "batch", batch);
    field(fields, "train_s", format!("{total:.3}"));
    field(fields, "steps_per_s", format!("{:.2}", (steps - 50) as f64 / step_times[50..].iter().sum::<f64>()));
    field(fields, "loss_first100_mean", format!("{:.6}", mean(&report.losses[..100])));
    field(fields, "loss_mid100_mean", format!("{:.6}", mean(&report.losses[1450..1550])));
    field(fields, "loss_last100_mean", format!("{:.6}", mean(&report.losses[steps - 100..])));
    if let Some(rss) = peak_rss_mib() {
        field(fields, "peak_rss_train_mib", format!("{rss:.1}"));
    }
    let (online, _) = trainer.into_parts();
    Ok(online.valid())
}

fn cfm_moons(device: &Device) -> flowforge::Result<Fields> {
    let mut fields = Fields::new();
    let path = AffinePath::new(CondOt::default());
    let objective = RegressionLoss::new(path.clone());
    let train_device = device.clone().autodiff();
    let net = train(&mut fields, device, |model, x1, r| {
        let x0 = standard_normal([256, 2], r, &train_device);
        let t = TimeSampling::default().sample(256, r, &CondOt::default())?;
        objective.loss(&predicting::<Velocity, _>(model), x0, x1.clone(), None, &t, &Condition::none())
    })?;
    let velocity = predicting::<Velocity, _>(&net);
    // Each thread samples its share of the rows from the first step to the last
    // (`solve_by_row_blocks`; the same values as `solve` on the whole batch for these
    // deterministic samplers).
    let field_model = |_rows| Ok(PathModel::new(&velocity, &path));
    let x0 = standard_normal([10_000, 2], &mut rng(seed(7)), device);
    for (name, steps, rk4) in [("euler100", 100, false), ("rk4_25", 25, true)] {
        let start = Instant::now();
        let solution = if rk4 {
            sample(field_model, &Rk4, x0.clone(), &TimeGrid::uniform(steps)?, |_| NoNoise)?
        } else {
            sample(field_model, &Euler, x0.clone(), &TimeGrid::uniform(steps)?, |_| NoNoise)?
        };
        let points = tensor_to_points(solution);
        field(&mut fields, &format!("{name}_s"), format!("{:.4}", start.elapsed().as_secs_f64()));
        quality(&mut fields, name, &points)?;
    }
    field(&mut fields, "n_sample", 10_000);
    floor(&mut fields)?;
    Ok(fields)
}

fn ddpm_moons(device: &Device) -> flowforge::Result<Fields> {
    let mut fields = Fields::new();
    let schedule = DiscreteScheduleConfig::new().init()?;
    let path = AffinePath::new(schedule.clone());
    let objective = RegressionLoss::new(path.clone());
    let levels = TimeSampling::DiscreteUniform { num_train_timesteps: 1000 };
    let train_device = device.clone().autodiff();
    let net = train(&mut fields, device, |model, x1, r| {
        let x0 = standard_normal([256, 2], r, &train_device);
        let t = levels.sample(256, r, &schedule)?;
        objective.loss(&predicting::<Noise, _>(model), x0, x1.clone(), None, &t, &Condition::none())
    })?;
    let eps = predicting::<Noise, _>(&net);
    // A block of rows per thread, as in W1; the ancestral sampler's block `b` draws its noise
    // from `SeededNoise::for_block(seed, b)`.
    let field_model = |_rows| Ok(PathModel::new(&eps, &path));
    let x0 = standard_normal([10_000, 2], &mut rng(seed(7)), device);
    let axis = schedule.timesteps();
    let start = Instant::now();
    let grid = TimeGrid::ddim(DdimSpacing::Leading { steps_offset: 0 }, 1000, axis, true)?;
    let ancestral = sample(field_model, &Ddpm::default(), x0.clone(), &grid, |b| SeededNoise::for_block(seed(8), b))?;
    let points = tensor_to_points(ancestral);
    field(&mut fields, "ddpm1000_s", format!("{:.4}", start.elapsed().as_secs_f64()));
    quality(&mut fields, "ddpm1000", &points)?;
    let start = Instant::now();
    let grid = TimeGrid::ddim(DdimSpacing::Leading { steps_offset: 0 }, 50, axis, true)?;
    let implicit = sample(field_model, &Ddim::new(0.0)?, x0, &grid, |_| NoNoise)?;
    let points = tensor_to_points(implicit);
    field(&mut fields, "ddim50_s", format!("{:.4}", start.elapsed().as_secs_f64()));
    quality(&mut fields, "ddim50", &points)?;
    field(&mut fields, "n_sample", 10_000);
    floor(&mut fields)?;
    Ok(fields)
}

fn floor(fields: &mut Fields) -> flowforge::Result<()> {
    let a = as_rows(&Toy2d::make_moons(2000, 0.05, &mut rng(2001))?);
    let b = as_rows(&Toy2d::make_moons(2000, 0.05, &mut rng(2002))?);
    field(fields, "floor_w2", format!("{:.6}", wasserstein2(&a, &b)?));
    field(fields, "floor_energy", format!("{:.6}", energy_distance(&a, &b)?));
    Ok(())
}

/// W0: the backend's own GEMM, `C = A·B` in f32 at N = 1,024 (median of 20 after 10 warm-up)
/// and 2,048 (median of 10 after 3): the practical peak the MLP workloads are measured against.
fn gemm_peak(device: &Device) -> flowforge::Result<Fields> {
    let mut fields = Fields::new();
    // Two GEMMs: burn's `matmul` (on flex, the `gemm` crate) and flowforge's kernel GEMM, timed
    // as `linear(a, b, 0, identity)` (it adds a zero bias row, n² of 2n³ work). W3 is held to the
    // faster of the two, the best this build can do on this machine.
    for (name, kernel) in [("flowforge", false), ("kernel", true)] {
        for (n, warm, reps) in [(1024usize, 10, 20), (2048, 3, 10)] {
            let a = Tensor::<2>::random([n, n], Distribution::Normal(0.0, 1.0), device);
            let b = Tensor::<2>::random([n, n], Distribution::Normal(0.0, 1.0), device);
            let zero = Tensor::<1>::zeros([n], device);
            let mut times = Vec::new();
            for i in 0..warm + reps {
                let start = Instant::now();
                let c = if kernel { flowforge::kernels::linear(a.clone(), b.clone(), Some(zero.clone()), flowforge::kernels::FusedActivation::Identity)? } else { a.clone().matmul(b.clone()) };
                // Force the product (eager on CPU backends, a sync on GPUs) without a full read-back.
                let _ = c.slice([0..1, 0..1]).into_scalar::<f64>();
                if i >= warm {
                    times.push(start.elapsed().as_secs_f64());
                }
            }
            let seconds = median(times);
            let suffix = if n == 1024 { String::new() } else { format!("_{n}") };
            field(&mut fields, &format!("{name}{suffix}_ms"), format!("{:.4}", seconds * 1e3));
            field(&mut fields, &format!("{name}{suffix}_gflops"), format!("{:.2}", 2.0 * (n as f64).powi(3) / seconds / 1e9));
        }
    }
    Ok(fields)
}

fn mlp_step_micro(device: &Device) -> flowforge::Result<Fields> {
    let mut fields = Fields::new();
    let fwd_flop = 264_704.0;
    field(&mut fields, "fwd_flop_per_sample", 264_704);
    let train_device = device.clone().autodiff();
    for batch in [256usize, 4096, 65536] {
        let mut r = rng(3);
        let x = standard_normal([batch, 2], &mut r, &train_device);
        let t = Tensor::<2>::random([batch, 1], Distribution::Uniform(0.0, 1.0), &train_device);
        let target = standard_normal([batch, 2], &mut r, &train_device);
        device.seed(0);
        let mut model = MlpConfig::new(2).init(&train_device)?;
        let mut optimizer = FusedAdam::default().into_module_optimizer();
        let mut times = Vec::new();
        for i in 0..60 {
            let start = Instant::now();
            let loss = (model.forward(x.clone(), std::slice::from_ref(&t))? - target.clone()).square().mean();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(1e-3, model, grads);
            // Wait for the update (a no-op on eager CPU backends, a sync on GPUs).
            let _ = model.num_params();
            if i >= 10 {
                times.push(start.elapsed().as_secs_f64());
            }
        }
        let ms = 1e3 * median(times);
        let gflop = 3.0 * fwd_flop * batch as f64 / 1e9;
        field(&mut fields, &format!("train_b{batch}_ms"), format!("{ms:.4}"));
        field(&mut fields, &format!("train_b{batch}_gflop"), format!("{gflop:.4}"));
        field(&mut fields, &format!("train_b{batch}_gflops"), format!("{:.2}", gflop / (ms / 1e3)));
    }
    let mlp = MlpConfig::new(2).init(device)?;
    let x = standard_normal([65536, 2], &mut rng(5), device);
    let t = Tensor::<2>::full([65536, 1], 0.5, device);
    let mut times = Vec::new();
    for i in 0..60 {
        let start = Instant::now();
        let _ = mlp.forward(x.clone(), std::slice::from_ref(&t))?.into_data();
        if i >= 10 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let ms = 1e3 * median(times);
    let gflop = fwd_flop * 65536.0 / 1e9;
    field(&mut fields, "fwd_b65536_ms", format!("{ms:.4}"));
    field(&mut fields, "fwd_b65536_gflop", format!("{gflop:.4}"));
    field(&mut fields, "fwd_b65536_gflops", format!("{:.2}", gflop / (ms / 1e3)));
    Ok(fields)
}

/// W4: CFM training steps of the workload's U-Net on the 8×8 digits upsampled to 16×16, and
/// Euler-100 on 256 images. FLOP counts are the workload's (PyTorch's FlopCounterMode).
fn unet_digits_step(device: &Device) -> flowforge::Result<Fields> {
    let mut fields = Fields::new();
    let digits = flowforge::data::images::bundled_digits()?;
    let train_device = device.clone().autodiff();
    device.seed(0);
    let config = UNetConfig::benchmark_w4();
    let mut model = config.init(&train_device)?;
    field(&mut fields, "n_params", model.num_params());
    let batch = 128;
    field(&mut fields, "batch", batch);
    // [n, 64] in [−1, 1] → [n, 1, 16, 16], each pixel a 2×2 block.
    let upsample = |x: Tensor<2>| {
        let n = x.dims()[0];
        x.reshape([n * 8, 1, 8, 1]).repeat_dim(1, 2).repeat_dim(3, 2).reshape([n, 1, 16, 16])
    };
    let path = AffinePath::new(CondOt::default());
    let objective = RegressionLoss::new(path.clone());
    let mut optimizer = FusedAdam::default().into_module_optimizer();
    let mut r = rng(1);
    let (mut times, mut losses) = (Vec::new(), Vec::new());
    for i in 0..35 {
        let (x, _) = digits.batch(&digits.sample_indices(batch, &mut r), &train_device)?;
        let x1 = upsample(x);
        let x0 = standard_normal([batch, 1, 16, 16], &mut r, &train_device);
        let t = TimeSampling::default().sample(batch, &mut r, &CondOt::default())?;
        let start = Instant::now();
        let loss = objective.loss(&predicting::<Velocity, _>(&model), x0, x1, None, &t, &Condition::none())?;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(1e-3, model, grads);
        let _ = model.num_params();
        if i >= 5 {
            times.push(start.elapsed().as_secs_f64());
        }
        losses.push(loss.into_scalar::<f64>());
    }
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let ms = 1e3 * median(times);
    field(&mut fields, "step_median_ms", format!("{ms:.3}"));
    field(&mut fields, "step_min_ms", format!("{:.3}", 1e3 * min));
    field(&mut fields, "loss_first", format!("{:.6}", losses[0]));
    field(&mut fields, "loss_last", format!("{:.6}", losses[losses.len() - 1]));
    let (flop_train, flop_fwd_256) = (46_567_260_160.0, 31_058_821_120.0);
    field(&mut fields, "flop_train_b128", 46_567_260_160u64);
    field(&mut fields, "train_gflops", format!("{:.2}", flop_train / 1e9 / (ms / 1e3)));
    let net = model.valid();
    let velocity = predicting::<Velocity, _>(&net);
    // 128 images per thread from the first step to the last (the same values as `solve` on
    // all 256: the U-Net treats images independently).
    let field_model = |_rows| Ok(PathModel::new(&velocity, &path));
    let x0 = standard_normal([256, 1, 16, 16], &mut rng(7), device);
    let start = Instant::now();
    let solution = sample(field_model, &Euler, x0, &TimeGrid::uniform(100)?, |_| NoNoise)?;
    let has_nan = solution.clone().is_nan().any().into_scalar::<bool>();
    let seconds = start.elapsed().as_secs_f64();
    field(&mut fields, "euler100_256img_s", format!("{seconds:.4}"));
    field(&mut fields, "flop_fwd_b256", 31_058_821_120u64);
    field(&mut fields, "euler_gflops", format!("{:.2}", 100.0 * flop_fwd_256 / 1e9 / seconds));
    field(&mut fields, "sample_has_nan", has_nan);
    Ok(fields)
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    if let Some(value) = args.iter().position(|a| a == "--seed").and_then(|i| args.get(i + 1)) {
        match value.parse() {
            Ok(n) => SEED.store(n, std::sync::atomic::Ordering::Relaxed),
            Err(_) => {
                eprintln!("--seed: expected a non-negative integer, got {value}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    WHOLE_BATCH.store(args.iter().any(|a| a == "--whole-batch"), std::sync::atomic::Ordering::Relaxed);
    // `--system-allocator` keeps glibc's defaults (large buffers mmapped and unmapped per op).
    let retained = !args.iter().any(|a| a == "--system-allocator") && flowforge::allocator::retain_freed_memory();
    eprintln!("allocator: freed memory {}", if retained { "retained for reuse (flowforge::allocator)" } else { "returned (glibc defaults)" });
    // `--caller-outside-pool` leaves rayon's default pool (every parallel region handed over
    // to pool threads while this thread sleeps).
    let computes = !args.iter().any(|a| a == "--caller-outside-pool") && flowforge::threads::compute_on_calling_thread();
    eprintln!("threads: {}", if computes { "this thread is a compute thread (flowforge::threads)" } else { "work handed to rayon's pool (defaults)" });
    // `--workers-sleep` lets the other pool threads sleep between parallel regions (rayon's
    // default) instead of polling for work while a workload runs, as PyTorch's OpenMP threads do.
    let polling = computes && !args.iter().any(|a| a == "--workers-sleep");
    eprintln!("workers: {}", if polling { "poll for work while a workload runs (flowforge::threads::keep_workers_polling)" } else { "sleep between parallel regions (defaults)" });
    // `--no-amx` keeps every f32 product on the FMA kernels; by default the MLP's hidden layers
    // run on AMX where the CPU has it (an exact three-way bf16 split, as accurate as f32:
    // flowforge::kernels::f32_matmul_on_amx).
    let amx = !args.iter().any(|a| a == "--no-amx") && flowforge::kernels::f32_matmul_on_amx(true);
    eprintln!("matmul: {}", if amx { "the MLP's hidden layers on AMX, f32 through a three-way bf16 split (flowforge::kernels::f32_matmul_on_amx)" } else { "f32 FMA kernels" });
    // `--device NAME` runs every workload on that backend (`flowforge::device`: default, flex,
    // ndarray, wgpu, cuda; the backend's cargo feature must be on).
    let (backend, device) = match args.iter().position(|a| a == "--device").and_then(|i| args.get(i + 1)) {
        Some(name) => match flowforge::device(name) {
            Ok(device) => (name.clone(), device),
            Err(e) => {
                eprintln!("--device: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
        None => ("default".to_string(), flowforge::default_device()),
    };
    eprintln!("device: {backend} ({device:?})");
    type Workload = fn(&Device) -> flowforge::Result<Fields>;
    let workloads: [(&str, Workload); 5] =
        [("gemm_peak", gemm_peak), ("cfm_moons", cfm_moons), ("ddpm_moons", ddpm_moons), ("mlp_step_micro", mlp_step_micro), ("unet_digits_step", unet_digits_step)];
    for (name, run) in workloads {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let start = Instant::now();
        let _polling = if polling { flowforge::threads::keep_workers_polling() } else { None };
        match run(&device) {
            Ok(mut fields) => {
                field(&mut fields, "wall_s", format!("{:.2}", start.elapsed().as_secs_f64()));
                field(&mut fields, "device", format!("\"{backend}\""));
                print_json(name, &fields);
            }
            Err(e) => {
                eprintln!("{name}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    std::process::ExitCode::SUCCESS
}
