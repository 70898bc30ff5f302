//! [`Application`] for [`MetaLearning`]: description, initial point and the evaluation (heads
//! refitted on meta-test support sets on the host).

use bilevel_core::tensor::{check_len, to_vec, vector};
use bilevel_core::BilevelProblem;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use super::{Adapt, BackboneConfig, BackboneKind, MetaLearning};
use crate::application::{Application, Metric};
use crate::common::{cross_entropy_per_sample, matrix_f32};
use crate::error::Result;
use crate::hyper_cleaning_cnn::seeded_backbone_init;

/// Fits `w = (W, b)` (`(d + 1) × k` row-major, bias row last) to
/// `(1/n) Σ CE([f_i, 1] w, c_i) + (λ/2)‖w‖²` from `w = 0` by `steps` of Nesterov's accelerated
/// gradient for strongly convex functions (step `1/L`, see the module docs).
fn fit_head(
    feats: &[f64],
    n: usize,
    d: usize,
    labels: &[u8],
    k: usize,
    reg: f64,
    steps: usize,
) -> Vec<f64> {
    let p = d + 1;
    let a = |i: usize, j: usize| if j < d { feats[i * d + j] } else { 1.0 };
    // σ_max(A)² by power iteration on AᵀA.
    let mut v = vec![1.0; p];
    let mut sigma2 = 0.0;
    for _ in 0..50 {
        let av: Vec<f64> = (0..n)
            .map(|i| (0..p).map(|j| a(i, j) * v[j]).sum())
            .collect();
        let mut atav = vec![0.0; p];
        for (i, &s) in av.iter().enumerate() {
            for (j, t) in atav.iter_mut().enumerate() {
                *t += a(i, j) * s;
            }
        }
        let norm = atav.iter().map(|t| t * t).sum::<f64>().sqrt();
        if norm == 0.0 {
            break;
        }
        sigma2 = norm / v.iter().map(|t| t * t).sum::<f64>().sqrt();
        v = atav.iter().map(|t| t / norm).collect();
    }
    let lip = 1.1 * sigma2 / (2.0 * n as f64) + reg;
    let kappa = lip / reg;
    let momentum = (kappa.sqrt() - 1.0) / (kappa.sqrt() + 1.0);
    let grad = |w: &[f64]| -> Vec<f64> {
        let mut g: Vec<f64> = w.iter().map(|v| reg * v).collect();
        for (i, &label) in labels.iter().enumerate().take(n) {
            let logits: Vec<f64> = (0..k)
                .map(|c| (0..p).map(|j| a(i, j) * w[j * k + c]).sum())
                .collect();
            let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for c in 0..k {
                let r = (e[c] / z - if usize::from(label) == c { 1.0 } else { 0.0 }) / n as f64;
                for j in 0..p {
                    g[j * k + c] += a(i, j) * r;
                }
            }
        }
        g
    };
    let mut w = vec![0.0; p * k];
    let mut look = w.clone();
    for _ in 0..steps {
        let g = grad(&look);
        let next: Vec<f64> = look.iter().zip(&g).map(|(l, g)| l - g / lip).collect();
        look = next
            .iter()
            .zip(&w)
            .map(|(nx, w)| nx + momentum * (nx - w))
            .collect();
        w = next;
    }
    w
}

/// Mean cross-entropy and accuracy of logits `[f, 1] w` against `labels` (host).
fn head_metrics(
    feats: &[f64],
    n: usize,
    d: usize,
    labels: &[u8],
    k: usize,
    w: &[f64],
) -> (f64, f64) {
    let (mut loss, mut correct) = (0.0, 0usize);
    for i in 0..n {
        let logits: Vec<f64> = (0..k)
            .map(|c| (0..d).map(|j| feats[i * d + j] * w[j * k + c]).sum::<f64>() + w[d * k + c])
            .collect();
        let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
        let label = usize::from(labels[i]);
        loss += lse - logits[label];
        // First maximal class, as `argmax`.
        let best = (0..k).fold(0, |b, c| if logits[c] > logits[b] { c } else { b });
        correct += usize::from(best == label);
    }
    (loss / n as f64, correct as f64 / n as f64)
}

impl<B: AutodiffBackend> Application<B> for MetaLearning<B> {
    fn id(&self) -> &'static str {
        "meta-learning"
    }

    fn describe(&self) -> String {
        let backbone = match self.spec.backbone {
            BackboneKind::Cnn4 => format!(
                "CNN4 ({} filters, conv3×3-BN-ReLU-{}pool ×4)",
                self.spec.filters,
                self.spec.pool.name()
            ),
            BackboneKind::Resnet12 => format!(
                "ResNet-12 (channels {:?}, {} pooling, no DropBlock)",
                self.spec.channels,
                self.spec.pool.name()
            ),
        };
        let layout = match self.spec.adapt {
            Adapt::Heads => "x = backbone φ, y = one linear head per task (from 0)".to_string(),
            Adapt::Anil => format!(
                "adapt = anil: x = (backbone φ, head initialisation w₀), y = one linear head \
                 per task adapted from w₀ ({} + {} parameters in x)",
                self.x_len,
                self.head.len()
            ),
            Adapt::Maml => format!(
                "adapt = maml: x = θ = (backbone φ, head initialisation w₀), y = one copy of θ \
                 per task adapted from θ ({} × {} parameters in y)",
                self.tasks.len(),
                self.block_len()
            ),
        };
        format!(
            "meta-learning (paper 004 §5 / 000 §4.3 / 002 §7.2): {}; {}-way {}-shot, {} queries \
             per class; {} pre-sampled training episodes (seed {}); {layout}; backbone {} with \
             transductive batch norm ({} parameters, {} features), linear heads of \
             {} tasks × {} parameters, g = support CE + (λ/2)‖w_i‖² with λ = {}, f = query CE, \
             both averaged over the task batch; test_accuracy over {} meta-test episodes with \
             the head refitted by {} accelerated GD steps on the same regularised support loss",
            self.source,
            self.spec.n_way,
            self.spec.k_shot,
            self.spec.n_query,
            self.tasks.len(),
            self.seed,
            backbone,
            self.x_len,
            self.head.features,
            self.tasks.len(),
            self.head.len(),
            self.spec.reg,
            self.eval.len(),
            self.spec.head_steps,
        )
    }

    /// Backbone: convolution weights He-normal from `seed`, batch-norm `γ = 1`, `β = 0`; every
    /// head `0` (and `w₀ = 0`). In the MAML layout every task's copy of `θ` starts at `θ`.
    fn initial_point(&self, seed: u64) -> Result<(Tensor<B, 1>, Tensor<B, 1>)> {
        let mut x = match &self.backbone {
            BackboneConfig::Cnn4(cfg) => seeded_backbone_init(&cfg.init::<B>(&self.device), seed),
            BackboneConfig::ResNet12(cfg) => {
                seeded_backbone_init(&cfg.init::<B>(&self.device), seed)
            }
        };
        if self.spec.adapt != Adapt::Heads {
            x.extend(std::iter::repeat_n(0.0, self.head.len()));
        }
        let y = match self.spec.adapt {
            Adapt::Maml => x.repeat(self.tasks.len()),
            Adapt::Heads | Adapt::Anil => vec![0.0; self.y_dim()],
        };
        Ok((vector(&x, &self.device), vector(&y, &self.device)))
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec![
            "test_accuracy",
            "test_query_loss",
            "train_query_loss",
            "train_query_accuracy",
        ]
    }

    /// Meta-test query accuracy and cross-entropy (heads refitted on each episode's support
    /// set, see the module docs), and the query loss `f(x, y; Full)` and accuracy of the
    /// training pool.
    fn evaluate(&self, x: &Tensor<B, 1>, y: &Tensor<B, 1>) -> Result<Vec<Metric>> {
        check_len("x", x, self.x_dim())?;
        check_len("y", y, self.y_dim())?;
        let (x, y) = (x.clone().detach(), y.clone().detach());
        let net = self.backbone(self.shared_backbone(&x));
        // Training pool: query loss and accuracy with the current heads (and, in the MAML
        // layout, each task's own adapted backbone).
        let (mut train_loss, mut train_acc) = (0.0, 0.0);
        for (i, task) in self.tasks.iter().enumerate() {
            let feats = match self.own_backbone(&y, i) {
                Some(phi_i) => self.backbone(phi_i).features(task.query.clone()),
                None => net.features(task.query.clone()),
            };
            let logits = self.head.logits(feats, self.head_of(&y, i));
            let ce = cross_entropy_per_sample(logits.clone(), task.query_targets.clone());
            let n = ce.dims()[0];
            train_loss += to_vec(ce.sum())?[0] / n as f64;
            train_acc += bilevel_models::linear::accuracy(logits, task.query_labels.clone());
        }
        let m = self.tasks.len() as f64;
        // Meta-test episodes: refit the head on the support features.
        let side = self.spec.side();
        let c = self.spec.dataset.channels();
        let (d, k) = (self.head.features, self.spec.n_way);
        let feats = |pixels: &[f32]| -> Result<(Vec<f64>, usize)> {
            let n = pixels.len() / (c * side * side);
            let images = matrix_f32::<B>(pixels, n, c * side * side, &self.device)
                .reshape([n, c, side, side]);
            Ok((to_vec(net.features(images))?, n))
        };
        let (mut test_loss, mut test_acc) = (0.0, 0.0);
        for e in &self.eval {
            let (fs, ns) = feats(&e.support)?;
            let w = fit_head(
                &fs,
                ns,
                d,
                &e.support_labels,
                k,
                self.spec.reg,
                self.spec.head_steps,
            );
            let (fq, nq) = feats(&e.query)?;
            let (l, a) = head_metrics(&fq, nq, d, &e.query_labels, k, &w);
            test_loss += l;
            test_acc += a;
        }
        let e = self.eval.len() as f64;
        Ok(vec![
            Metric::new("test_accuracy", test_acc / e),
            Metric::new("test_query_loss", test_loss / e),
            Metric::new("train_query_loss", train_loss / m),
            Metric::new("train_query_accuracy", train_acc / m),
        ])
    }
}
