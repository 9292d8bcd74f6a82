//! `flowforge::kernels::f32_matmul_on_amx`: the MLP's hidden layers on AMX agree with the f32
//! FMA kernels to f32 rounding, are as close as they are to the f64 values, and do run on AMX
//! where the CPU has it. (Its own test binary: the setting is process-wide.)

use burn::tensor::{Device, Distribution, Tensor};
use flowforge::kernels::{f32_matmul_on_amx, silu_mlp};

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32")
}

/// The MLP in f64 for row `i`: `silu` after every layer but the last.
fn reference(x: &[f32], layers: &[(Vec<f32>, Vec<f32>)], widths: &[usize], i: usize) -> Vec<f64> {
    let mut h: Vec<f64> = x[i * widths[0]..(i + 1) * widths[0]].iter().map(|&v| f64::from(v)).collect();
    for (l, (w, b)) in layers.iter().enumerate() {
        let (k, n) = (widths[l], widths[l + 1]);
        let z: Vec<f64> = (0..n).map(|j| f64::from(b[j]) + (0..k).map(|p| h[p] * f64::from(w[p * n + j])).sum::<f64>()).collect();
        h = if l + 1 < layers.len() { z.iter().map(|&z| z / (1.0 + (-z).exp())).collect() } else { z };
    }
    h
}

#[test]
fn the_mlp_on_amx_agrees_with_the_fma_kernels() {
    let d = Device::flex();
    d.seed(5);
    let widths = [3usize, 256, 256, 256, 2];
    let m = 1_000;
    let x = Tensor::<2>::random([m, 3], Distribution::Normal(0.0, 2.0), &d);
    let layers: Vec<_> = widths
        .windows(2)
        .map(|w| (Tensor::<2>::random([w[0], w[1]], Distribution::Normal(0.0, 1.0 / (w[0] as f64).sqrt()), &d), Some(Tensor::<1>::random([w[1]], Distribution::Normal(0.0, 0.5), &d))))
        .collect();
    assert!(!f32_matmul_on_amx(false));
    let fma = values(silu_mlp(x.clone(), &layers).unwrap());
    if !f32_matmul_on_amx(true) {
        eprintln!("no AMX on this machine: nothing to compare");
        return;
    }
    let amx = values(silu_mlp(x.clone(), &layers).unwrap());
    assert!(!f32_matmul_on_amx(false));
    assert_eq!(values(silu_mlp(x.clone(), &layers).unwrap()), fma, "off again: the FMA kernels' bits");

    // It ran on AMX: not the FMA kernels' bits, but within f32 rounding of them.
    assert!(amx.iter().zip(&fma).any(|(a, f)| a != f), "the AMX path did not run");
    let scale = fma.iter().fold(1.0f32, |s, v| s.max(v.abs()));
    let gap = amx.iter().zip(&fma).map(|(a, f)| (a - f).abs()).fold(0.0f32, f32::max);
    assert!(gap <= 1e-5 * scale, "AMX and FMA differ by {gap:e} (scale {scale})");

    // As close to the f64 values as the FMA kernels are.
    let xs = values(x);
    let host: Vec<(Vec<f32>, Vec<f32>)> = layers.iter().map(|(w, b)| (values(w.clone()), values(b.clone().unwrap()))).collect();
    let (mut worst_amx, mut worst_fma) = (0.0f64, 0.0f64);
    for i in (0..m).step_by(7) {
        for (j, exact) in reference(&xs, &host, &widths, i).into_iter().enumerate() {
            worst_amx = worst_amx.max((f64::from(amx[i * 2 + j]) - exact).abs());
            worst_fma = worst_fma.max((f64::from(fma[i * 2 + j]) - exact).abs());
        }
    }
    eprintln!("largest error against f64: AMX {worst_amx:e}, FMA {worst_fma:e}; AMX - FMA {gap:e}");
    assert!(worst_amx <= 2.0 * worst_fma + 1e-7, "largest error against f64: AMX {worst_amx:e}, FMA {worst_fma:e}");
}
