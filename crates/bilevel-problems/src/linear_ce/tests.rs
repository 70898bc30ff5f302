//! Blocked vs unblocked derivatives, noisy rows and the constructors' checks.

use super::*;
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{matrix, rel_err, vector};
use bilevel_core::ClosedForm;
use burn::backend::NdArray;

type B = NdArray<f64>;

/// `(X, T)`: normal features, and one-hot targets over `c` classes (softmax) or a `{0, 1}`
/// column (logistic, `c = 1`).
fn random_set(
    rng: &mut Rng,
    n: usize,
    d: usize,
    c: usize,
    output: Output,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let device = Default::default();
    let features = matrix::<B>(&rng.normal_vec(n * d), n, d, &device).expect("sizes match");
    let targets: Vec<f64> = match output {
        Output::Softmax => (0..n)
            .flat_map(|_| {
                let l = rng.index(c);
                (0..c).map(move |k| if k == l { 1.0 } else { 0.0 })
            })
            .collect(),
        Output::Logistic => (0..n).map(|_| rng.index(2) as f64).collect(),
    };
    let targets = matrix::<B>(&targets, n, c, &device).expect("sizes match");
    (features, targets)
}

/// `g`, `∇g`, `f`, `∇_y f`, `H v` and `J v` of two models agree to 1e-13 on `batch`
/// (`f` on the full batch when `batch` is a mini-batch of training rows).
fn assert_same_derivatives(
    a: &LinearCe<B>,
    b: &LinearCe<B>,
    [x, y, v]: [&Tensor<B, 1>; 3],
    batch: &Batch,
    case: &str,
) {
    let close = |p: &Tensor<B, 1>, q: &Tensor<B, 1>, what: &str| {
        let err = rel_err(p, q);
        assert!(err < 1e-13, "{what} ({case}, {batch:?}): {err:e}");
    };
    let (g1, g2) = (
        a.inner_gradient(x, y, batch, true),
        b.inner_gradient(x, y, batch, true),
    );
    close(&g1.0, &g2.0, "g");
    close(&g1.1.unwrap(), &g2.1.unwrap(), "grad_x g");
    close(&g1.2, &g2.2, "grad_y g");
    let (f1, f2) = (
        a.outer_gradient(x, y, &Batch::Full),
        b.outer_gradient(x, y, &Batch::Full),
    );
    close(&f1.0, &f2.0, "f");
    close(&f1.2, &f2.2, "grad_y f");
    let (p1, p2) = (
        a.inner_products(x, y, v, batch, true),
        b.inner_products(x, y, v, batch, true),
    );
    close(&p1.0, &p2.0, "Hv");
    close(&p1.1.unwrap(), &p2.1.unwrap(), "Jv");
}

#[test]
fn blocked_derivatives_equal_unblocked() {
    let mut rng = Rng::seed(5);
    let (n, n_val, d) = (37, 11, 6);
    let device = Default::default();
    let per_feature = Ridge::ExpPerFeature { scale: 0.3 };
    let cases = [
        (
            Output::Softmax,
            SampleWeights::Sigmoid,
            Ridge::Const(1e-2),
            false,
            n,
        ),
        (
            Output::Softmax,
            SampleWeights::Sigmoid,
            Ridge::Const(1e-2),
            true,
            n,
        ),
        (Output::Softmax, SampleWeights::One, Ridge::Exp, true, 1),
        (Output::Softmax, SampleWeights::One, per_feature, false, d),
        (Output::Logistic, SampleWeights::One, per_feature, true, d),
        (
            Output::Logistic,
            SampleWeights::Sigmoid,
            Ridge::Const(1e-2),
            false,
            n,
        ),
    ];
    for (output, weights, ridge, bias, x_dim) in cases {
        let c = if output == Output::Logistic { 1 } else { 4 };
        let train = random_set(&mut rng, n, d, c, output);
        let val = random_set(&mut rng, n_val, d, c, output);
        let model = LinearModel {
            shape: LinearShape {
                features: d,
                classes: c,
                bias,
            },
            output,
            weights,
            ridge,
        };
        let shape = model.shape;
        let sets = ((&train.0, &train.1), (&val.0, &val.1));
        let one = LinearCe::with_block_elements(sets.0, sets.1, model, n * d).unwrap();
        // 2 rows per block: 19 train blocks, 6 validation blocks.
        let many = LinearCe::with_block_elements(sets.0, sets.1, model, 2 * d).unwrap();
        assert_eq!(many.train.blocks.rows.len(), 19);
        assert_eq!(many.val.blocks.rows.len(), 6);
        let x = vector::<B>(&rng.normal_vec(x_dim), &device);
        let y = vector::<B>(&rng.normal_vec(shape.len()), &device);
        let v = vector::<B>(&rng.normal_vec(shape.len()), &device);
        let case = format!("{output:?}, {weights:?}, {ridge:?}, bias {bias}");
        let point = [&x, &y, &v];
        assert_same_derivatives(&one, &many, point, &Batch::Full, &case);
        // Mini-batches take one block of their rows whatever the budget.
        let batch = Batch::Indices(vec![3, 3, 30, 0, 12]);
        assert_same_derivatives(&one, &many, point, &batch, &case);
    }
}

#[test]
fn inconsistent_models_are_config_errors() {
    let mut rng = Rng::seed(2);
    let (n, d) = (5, 3);
    let soft = random_set(&mut rng, n, d, 4, Output::Softmax);
    let logit = random_set(&mut rng, n, d, 1, Output::Logistic);
    let model = |classes, output, weights, ridge| LinearModel {
        shape: LinearShape {
            features: d,
            classes,
            bias: false,
        },
        output,
        weights,
        ridge,
    };
    let message = |sets: &(Tensor<B, 2>, Tensor<B, 2>), m: LinearModel| {
        let pair = (&sets.0, &sets.1);
        match LinearCe::new(pair, pair, m) {
            Err(e @ ProblemError::Config { .. }) => e.to_string(),
            other => panic!("{m:?}: expected a config error, got {other:?}"),
        }
    };
    let sigmoid = SampleWeights::Sigmoid;
    let text = message(&soft, model(4, Output::Softmax, sigmoid, Ridge::Exp));
    assert!(text.contains("ridge must be constant"), "{text}");
    let per_feature = Ridge::ExpPerFeature { scale: 1.0 };
    let text = message(&soft, model(4, Output::Softmax, sigmoid, per_feature));
    assert!(text.contains("ridge must be constant"), "{text}");
    let text = message(
        &soft,
        model(4, Output::Logistic, SampleWeights::One, per_feature),
    );
    assert!(text.contains("one logit, got 4 classes"), "{text}");
    let text = message(
        &logit,
        model(4, Output::Softmax, SampleWeights::One, per_feature),
    );
    assert!(
        text.contains("targets [5, 1] do not match 3 features and 4 classes"),
        "{text}"
    );
    assert!(LinearCe::new(
        (&logit.0, &logit.1),
        (&logit.0, &logit.1),
        model(1, Output::Logistic, SampleWeights::One, per_feature)
    )
    .is_ok());
}

#[test]
fn noisy_rows_in_blocks_equal_one_block() {
    let mut rng = Rng::seed(8);
    let (n_c, n_p, n_val, d, c) = (9, 7, 5, 3, 4);
    let device = Default::default();
    let clean = random_set(&mut rng, n_c, d, c, Output::Softmax);
    let noisy = random_set(&mut rng, n_p, d, c, Output::Softmax);
    let val = random_set(&mut rng, n_val, d, c, Output::Softmax);
    let model = LinearModel {
        shape: LinearShape {
            features: d,
            classes: c,
            bias: true,
        },
        output: Output::Softmax,
        weights: SampleWeights::One,
        ridge: Ridge::Const(0.1),
    };
    let build = |block_elements| {
        LinearCe::with_block_elements(
            (&clean.0, &clean.1),
            (&val.0, &val.1),
            model,
            block_elements,
        )
        .unwrap()
        .with_noisy_rows((&noisy.0, &noisy.1))
        .unwrap()
        .negated_outer()
    };
    let (one, many) = (build(100 * d), build(2 * d));
    let x = vector::<B>(&rng.normal_vec(n_p * d), &device);
    let y = vector::<B>(&rng.normal_vec(model.shape.len()), &device);
    let v = vector::<B>(&rng.normal_vec(model.shape.len()), &device);
    // 9 clean rows in 5 blocks, then 7 noisy rows in 4 view blocks.
    let (blocks, _, part) = many.train_batch(&x, &Batch::Full);
    assert_eq!(blocks.rows.len(), 9);
    assert_eq!(blocks.ranges[5], 9..11);
    assert_eq!(part.map(|p| p.rows), Some(9..16));
    let (blocks, _, _) = one.train_batch(&x, &Batch::Full);
    assert_eq!(blocks.rows.len(), 2);
    assert_same_derivatives(&one, &many, [&x, &y, &v], &Batch::Full, "noisy rows");
    let close = |a: &Tensor<B, 1>, b: &Tensor<B, 1>, what: &str| {
        let err = rel_err(a, b);
        assert!(err < 1e-13, "{what}: {err:e}");
    };
    // The negated outer loss: f and ∇_y f are those of the plain model, negated.
    let plain = LinearCe::new((&clean.0, &clean.1), (&val.0, &val.1), model).unwrap();
    let (f1, f2) = (
        one.outer_gradient(&x, &y, &Batch::Full),
        plain.outer_gradient(&x, &y, &Batch::Full),
    );
    close(&f1.0, &f2.0.neg(), "f");
    close(&f1.2, &f2.2.neg(), "grad_y f");
    // x is the noise: other uses of x are refused.
    let weighted = LinearModel {
        weights: SampleWeights::Sigmoid,
        ..model
    };
    let err = LinearCe::new((&clean.0, &clean.1), (&val.0, &val.1), weighted)
        .unwrap()
        .with_noisy_rows((&noisy.0, &noisy.1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("sample weights must be one"), "{err}");
    let err = plain
        .with_noisy_rows((&noisy.0, &val.1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("targets [5, 4] do not match"), "{err}");
}
