//! Why the layer exists: a small regression whose features carry large
//! offsets (1000, 2000, …), trained by plain SGD with and without a
//! `MeanCentering` in front. Prints both loss curves.
//!
//!   cargo run --release -p centering-burn --example offsets

use burn_core as burn;
use burn_core::module::{Module, ModuleMapper, Param};
use burn_core::tensor::{Device, Gradients, Tensor, TensorData};
use burn_nn::{Linear, LinearConfig, Relu};
use centering_burn::{CenteringConfig, Error, MeanCentering};

const D: usize = 4;
const BATCH: usize = 64;
const STEPS: usize = 300;

#[derive(Module, Debug)]
struct Mlp {
    center: Option<MeanCentering>,
    hidden: Linear,
    out: Linear,
    relu: Relu,
}

impl Mlp {
    fn new(centered: bool, device: &Device) -> Result<Self, Error> {
        let center = match centered {
            true => Some(CenteringConfig::new(D).with_momentum(0.9).init(device)?),
            false => None,
        };
        Ok(Mlp {
            center,
            hidden: LinearConfig::new(D, 16).init(device),
            out: LinearConfig::new(16, 1).init(device),
            relu: Relu::new(),
        })
    }

    fn forward(&self, x: Tensor<2>) -> Result<Tensor<2>, Error> {
        let x = match &self.center {
            Some(c) => c.forward(x)?,
            None => x,
        };
        Ok(self.out.forward(self.relu.forward(self.hidden.forward(x))))
    }
}

/// Plain SGD: every trainable tensor takes `p − lr·∂L/∂p`.
struct Sgd<'a> {
    grads: &'a Gradients,
    lr: f64,
}

impl ModuleMapper for Sgd<'_> {
    fn map_float<const K: usize>(&mut self, param: Param<Tensor<K>>) -> Param<Tensor<K>> {
        let (id, t, _) = param.consume();
        let next = match t.grad(self.grads) {
            Some(g) => (t.detach() - g.mul_scalar(self.lr)).detach().require_grad(),
            None => t,
        };
        Param::initialized(id, next)
    }
}

/// Features `1000·(j+1) + z`, z uniform in [−1, 1); target `Σ a_j z_j`.
fn data(n: usize, seed: u64, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let a = [1.5f32, -2.0, 0.5, 1.0];
    let mut x = Vec::with_capacity(n * D);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let mut t = 0.0;
        for (j, aj) in a.iter().enumerate() {
            let z = next();
            x.push(1000.0 * (j + 1) as f32 + z);
            t += aj * z;
        }
        y.push(t);
    }
    (
        Tensor::from_data(TensorData::new(x, [n, D]), device),
        Tensor::from_data(TensorData::new(y, [n, 1]), device),
    )
}

fn mse(pred: Tensor<2>, y: Tensor<2>) -> Tensor<1> {
    let e = pred - y;
    (e.clone() * e).mean()
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_data()
        .try_to_vec::<f32>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f32::NAN)
}

/// Trains from the same initial weights; returns the loss every 25 steps
/// and the held-out loss at inference.
fn run(centered: bool, lr: f64, device: &Device) -> Result<(Vec<f32>, f32, Mlp), Error> {
    let mut model = Mlp::new(centered, device)?;
    let mut curve = Vec::new();
    for step in 0..STEPS {
        let (x, y) = data(BATCH, step as u64 + 1, device);
        let loss = mse(model.forward(x)?, y);
        let grads = loss.backward();
        if step % 25 == 0 || step == STEPS - 1 {
            curve.push(scalar(loss));
        }
        model = model.map(&mut Sgd { grads: &grads, lr });
    }
    let infer = model.valid();
    let (x, y) = data(1024, 12345, &Device::default());
    let test = scalar(mse(infer.forward(x)?, y));
    Ok((curve, test, model))
}

fn main() -> Result<(), Error> {
    let device = Device::default().autodiff();
    // One seed for every model's initial weights.
    let runs = [
        ("without the layer, lr 0.05   ", false, 0.05),
        ("without the layer, lr 1e-7   ", false, 1e-7),
        ("with MeanCentering, lr 0.05  ", true, 0.05),
    ];
    println!("training loss (MSE) every 25 steps, {STEPS} steps of {BATCH} samples; features offset by 1000·(j+1)");
    for (name, centered, lr) in runs {
        device.seed(7);
        let (curve, test, model) = run(centered, lr, &device)?;
        let shown: Vec<String> = curve.iter().map(|l| format!("{l:.3e}")).collect();
        println!("{name} {}", shown.join(" "));
        println!("{:30} held-out loss at inference: {test:.3e}", "");
        if let Some(c) = &model.center {
            let m = c.to_centering();
            println!(
                "{:30} learned moving mean: {:?} after {} steps",
                "",
                m.mean().map(|m| m.to_vec()),
                m.n_batches()
            );
        }
    }
    Ok(())
}
