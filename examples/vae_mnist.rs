//! A variational autoencoder on the bundled MNIST digits (Kingma & Welling, *Auto-Encoding
//! Variational Bayes*, ICLR 2014): Bernoulli likelihood on grey levels in [0, 1], Gaussian
//! posterior, standard-normal prior, trained on the negative ELBO.
//!
//! ```text
//! cargo run --example vae_mnist                          # ≈ 1 min on 2 CPU cores (MLP VAE)
//! cargo run --example vae_mnist -- --arch conv --steps 2000
//! ```
//!
//! Prints the held-out negative ELBO (reconstruction and KL, nats and bits per dimension) and
//! writes `reconstructions.png` (originals above their reconstructions), `samples.png` (decoded
//! prior draws) and `interpolation.png` (decoded straight lines between the posterior means of
//! held-out pairs) to `--out` (default `out/vae_mnist`).

mod common;

use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::Tensor;
use common::{MnistSetup, save_image_grid, train_vae};
use flowforge::cli::Args;
use flowforge::data::images::to_unit_range;
use flowforge::data::{rng, standard_normal};
use flowforge::losses::elbo::{Elbo, Likelihood, reparameterize};
use flowforge::nets::{ConvVaeConfig, MlpVaeConfig, VariationalAutoencoder};
use flowforge::train::{LrSchedule, TrainerConfig};

const USAGE: &str = "vae_mnist [--arch mlp|conv] [--latent 16] [--steps 3000] [--batch 128] [--lr 1e-3] [--beta 1.0] [--seed 0] \
[--out out/vae_mnist] [--device default|flex|wgpu|ndarray|cuda]";

fn main() -> std::process::ExitCode {
    flowforge::cli::main(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(USAGE)?;
    let arch = args.choice("arch", "mlp", &["mlp", "conv"])?;
    let latent = args.positive("latent", 16)?;
    let steps = args.count("steps", 3000)?;
    let batch = args.positive("batch", 128)?;
    let lr: f64 = args.get("lr", 1e-3)?;
    let beta: f64 = args.get("beta", 1.0)?;
    let seed: u64 = args.get("seed", 0)?;
    let MnistSetup { out, device, train_device, train, held_out } = MnistSetup::read(&args, "vae_mnist", seed)?;
    let (rows, cols, dim) = (train.rows, train.cols, train.pixels_per_image());
    println!("{arch} VAE with {latent} latent dimensions");
    let config = TrainerConfig::new(steps).with_learning_rate(lr).with_warmup_steps(100).with_schedule(LrSchedule::Cosine { final_fraction: 0.05 }).with_seed(seed);
    let vae: Box<dyn VariationalAutoencoder> = match arch.as_str() {
        "conv" => Box::new(train_vae(ConvVaeConfig::new(1, rows).with_latent_dim(latent).init(&train_device)?, &train, config, batch, beta, &train_device)?.valid()),
        _ => Box::new(train_vae(MlpVaeConfig::new(dim).with_latent_dim(latent).init(&train_device)?, &train, config, batch, beta, &train_device)?.valid()),
    };

    // Held-out negative ELBO with one posterior sample per digit.
    let (x, _) = held_out.head(held_out.len(), &device)?;
    let x01 = to_unit_range(x.clone());
    let (mu, logvar) = vae.encode(x01.clone())?;
    let z = reparameterize(mu.clone(), logvar.clone(), standard_normal(mu.dims(), &mut rng(seed + 5), &device))?;
    let terms = Elbo { likelihood: Likelihood::Bernoulli, beta: 1.0 }.terms(x01, vae.decode(z)?, mu.clone(), logvar)?;
    let (reconstruction, kl) = (terms.reconstruction.into_scalar::<f64>(), terms.kl.into_scalar::<f64>());
    let nelbo = reconstruction + kl;
    println!(
        "held-out ({} digits): reconstruction {reconstruction:.2} nats, KL {kl:.2} nats, negative ELBO {nelbo:.2} nats ({:.4} bits/dim)",
        held_out.len(),
        nelbo / (dim as f64 * core::f64::consts::LN_2)
    );

    // Pictures (decoder means sigmoid(logits), mapped back to [−1, 1] for the grid helper).
    let shown = |logits: Tensor<2>| sigmoid(logits).mul_scalar(2.0).sub_scalar(1.0);
    let originals = x.clone().slice([0..16, 0..dim]);
    let reconstructions = shown(vae.decode(mu.clone().slice([0..16, 0..latent]))?);
    let interleaved = Tensor::cat(vec![originals.clone().slice([0..8, 0..dim]), reconstructions.clone().slice([0..8, 0..dim]), originals.slice([8..16, 0..dim]), reconstructions.slice([8..16, 0..dim])], 0);
    save_image_grid(interleaved, rows, cols, 8, "held-out digits (rows 1, 3) and their reconstructions (rows 2, 4)", &out.join("reconstructions.png"))?;
    let prior = standard_normal([64, latent], &mut rng(seed + 6), &device);
    save_image_grid(shown(vae.decode(prior)?), rows, cols, 8, "decoded draws from the prior N(0, I)", &out.join("samples.png"))?;
    // Eight pairs of held-out digits, ten steps from one posterior mean to the other.
    let mut lines = Vec::new();
    for pair in 0..8 {
        let (a, b) = (mu.clone().slice([pair..pair + 1, 0..latent]), mu.clone().slice([100 + pair * 37..101 + pair * 37, 0..latent]));
        for k in 0..10 {
            let w = k as f64 / 9.0;
            lines.push(a.clone().mul_scalar(1.0 - w) + b.clone().mul_scalar(w));
        }
    }
    save_image_grid(shown(vae.decode(Tensor::cat(lines, 0))?), rows, cols, 10, "latent interpolation between held-out digits", &out.join("interpolation.png"))?;
    Ok(())
}
