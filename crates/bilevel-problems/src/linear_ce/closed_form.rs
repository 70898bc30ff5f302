//! [`ClosedForm`] for [`LinearCe`]: `g`, `f`, their gradients and the products `H v`, `J v`
//! (formulas in the module documentation of [`super`]).

use bilevel_core::{Batch, ClosedForm};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::forward::{accumulate, column, mean};
use super::LinearCe;

impl<B: Backend> ClosedForm<B> for LinearCe<B> {
    fn inner_gradient(
        &self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        batch: &Batch,
        want_x: bool,
    ) -> (Tensor<B, 1>, Option<Tensor<B, 1>>, Tensor<B, 1>) {
        let (blocks, targets, noisy) = self.train_batch(x, batch);
        let (fw, ce, _) = self.forward((blocks, targets), y, None);
        let m = fw.m;
        let weights = self.sample_weights(x, batch);
        let residual = fw.probs.clone().sub(fw.targets.clone());
        let (g, data_value) = match &weights {
            Some((s, _)) => (
                residual.mul(column(s.clone())),
                mean(ce.clone().mul(s.clone()), m),
            ),
            None => (residual, mean(ce.clone(), m)),
        };
        let g = g.mul_scalar(1.0 / m as f64);
        let (gw, gb) = self.data_gradient(&fw, g.clone());
        let (w, _) = self.split(y);
        let rho_w = w.clone().mul(self.rho(x));
        let value = data_value.add(rho_w.clone().mul(w.clone()).sum());
        let gw = gw.add(rho_w.mul_scalar(2.0));
        let gy = self.join(gw, gb);
        let gx = want_x.then(|| {
            let mut gx = None;
            if let Some((_, ds)) = weights {
                let q = ds.mul(ce).mul_scalar(1.0 / m as f64);
                gx = accumulate(gx, self.scatter(x, q, batch));
            }
            if let Some(part) = &noisy {
                gx = accumulate(gx, self.noisy_part(part, g, w.clone()));
            }
            if let Some(part) = self.ridge_x_part(x, w.clone(), w, 1.0) {
                gx = accumulate(gx, part);
            }
            gx.unwrap_or_else(|| x.zeros_like())
        });
        (value, gx, gy)
    }

    fn outer_gradient(
        &self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        batch: &Batch,
    ) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
        let (fw, ce, _) = self.forward(self.val.batch(batch), y, None);
        let m = fw.m;
        let g = fw
            .probs
            .clone()
            .sub(fw.targets.clone())
            .mul_scalar(self.outer_sign / m as f64);
        let (gw, gb) = self.data_gradient(&fw, g);
        let value = mean(ce, m).mul_scalar(self.outer_sign);
        (value, x.zeros_like(), self.join(gw, gb))
    }

    fn inner_products(
        &self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        v: &Tensor<B, 1>,
        batch: &Batch,
        want_jvp: bool,
    ) -> (Tensor<B, 1>, Option<Tensor<B, 1>>) {
        let (blocks, targets, noisy) = self.train_batch(x, batch);
        let (fw, _, u) = self.forward((blocks, targets), y, Some(v));
        let u = u.expect("logits with an extra block return it");
        let m = fw.m;
        let weights = self.sample_weights(x, batch);
        let pu = fw.probs.clone().mul(u.clone());
        let r = pu
            .clone()
            .sub(fw.probs.clone().mul(pu.sum_dim(1)))
            .mul_scalar(1.0 / m as f64);
        let r = match &weights {
            Some((s, _)) => r.mul(column(s.clone())),
            None => r,
        };
        let (hw, hb) = self.data_gradient(&fw, r.clone());
        let (vw, _) = self.split(v);
        let hw = hw.add(vw.clone().mul(self.rho(x)).mul_scalar(2.0));
        let hv = self.join(hw, hb);
        let jv = want_jvp.then(|| {
            let mut jv = None;
            if let Some((_, ds)) = weights {
                let inner = fw
                    .probs
                    .clone()
                    .sub(fw.targets.clone())
                    .mul(u)
                    .sum_dim(1)
                    .reshape([m]);
                let q = ds.mul(inner).mul_scalar(1.0 / m as f64);
                jv = accumulate(jv, self.scatter(x, q, batch));
            }
            let (w, _) = self.split(y);
            if let Some(part) = &noisy {
                // Σ (V g_i + W r_i) = [G R] [V W]ᵀ on the noisy rows.
                let g = fw
                    .probs
                    .clone()
                    .sub(fw.targets.clone())
                    .mul_scalar(1.0 / m as f64);
                let a = Tensor::cat(vec![g, r], 1);
                let b = Tensor::cat(vec![vw.clone(), w.clone()], 1);
                jv = accumulate(jv, self.noisy_part(part, a, b));
            }
            if let Some(part) = self.ridge_x_part(x, w, vw, 2.0) {
                jv = accumulate(jv, part);
            }
            jv.unwrap_or_else(|| x.zeros_like())
        });
        (hv, jv)
    }
}
