//! Our sets seen through burn's `Dataset` trait, burn datasets read back into ours, and one of
//! ours fed through burn's real `DataLoader`.
//!
//! Each test names, in a `Catches:` comment, the mutations of `src/burn_items.rs` it was run
//! against and failed under (each applied, the test run, then reverted).
//!
//! Note on burn's loader: its iterator (and `Dataset::iter`) reads items until `get` returns
//! `None` and never looks at `len()`; only `DataLoader::num_items` reports `len()`. So the
//! loader tests check `num_items` as well, and a `get` that is `Some` past the end would make
//! the loader loop forever (the trait-level tests catch that first).

use std::sync::Arc;

use bilevel_data::burn_dataset::transform::PartialDataset;
// burn's trait, under another name: `Dataset` alone is our struct.
use bilevel_data::burn_dataset::{Dataset as BurnDataset, InMemDataset};
use bilevel_data::{
    DataError, Dataset, EpisodeRange, EpisodeSampler, EpisodeSpec, ImageItem, ImageSet,
    ImageSetItem, Mnist, RegressionItem, RegressionSet, SparseDataset, SparseItem,
};
use burn::backend::NdArray;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::DataLoaderBuilder;
use burn::prelude::Backend;
use burn::tensor::{Int, Tensor, TensorData};

type B = NdArray<f32>;

/// Ten 2×3 images whose pixels encode (sample, position) and labels `(3 i + 1) mod 10`, so any
/// shift or swap of samples, pixels or labels shows.
fn small_set() -> Dataset {
    let (rows, cols, n) = (2, 3, 10);
    let images = (0..n * rows * cols).map(|v| v as f32 * 0.25).collect();
    let labels = (0..n).map(|i| ((3 * i + 1) % 10) as u8).collect();
    Dataset::new(images, labels, rows, cols).unwrap()
}

/// Checks `ours` seen through burn's trait item by item against its own fields, and that the
/// item past the end is `None`.
fn assert_items_match(ours: &Dataset) {
    let burn: &dyn BurnDataset<ImageItem> = ours;
    assert_eq!(burn.len(), ours.len);
    assert_eq!(burn.is_empty(), ours.len == 0);
    let f = ours.rows * ours.cols;
    for i in 0..ours.len {
        let item = burn.get(i).unwrap_or_else(|| panic!("no item {i}"));
        assert_eq!(item.image, ours.images[i * f..(i + 1) * f], "image {i}");
        assert_eq!(item.label, ours.labels[i], "label {i}");
    }
    assert_eq!(burn.get(ours.len), None);
    assert_eq!(burn.get(usize::MAX), None);
}

// Catches: `get` reading `image(index + 1)` (off by one; also makes the last item `None`);
// `get` taking a neighbour's label (`labels[index ^ 1]`); `len()` returning `self.len - 1` or
// `self.len + 1`; `get` without the bounds check (`Some` with an empty image past the end).
#[test]
fn our_dataset_through_burn_trait_item_by_item() {
    assert_items_match(&small_set());
    // And the trait's own iterator visits the same items in order.
    let ours = small_set();
    let items: Vec<ImageItem> = BurnDataset::iter(&ours).collect();
    assert_eq!(items.len(), 10);
    assert_eq!(items[7].image, ours.image(7).unwrap());
    assert_eq!(items[7].label, 2);
}

// The bundled MNIST (test split: 10 000 images) seen through burn's trait, then read back.
// Catches: the same `get`/`len` mutations as above on real data; in `from_burn`, reading the
// items in reverse or pushing each label twice (round trip differs or errs).
#[test]
fn bundled_mnist_through_burn_trait_and_back() {
    let mnist = Mnist::load_bundled().unwrap();
    let test = &mnist.test;
    assert_eq!((test.len, test.rows, test.cols), (10_000, 28, 28));
    assert_items_match(test);
    let back = Dataset::from_burn(test, 28, 28).unwrap();
    assert_eq!(&back, test);
}

// Round trip burn → ours → burn: a user's `InMemDataset` read into ours, seen again through
// burn's trait, gives back the same items.
// Catches: `from_burn` reading the items in reverse or pushing each label twice; our `get`
// off by one or with a neighbour's label; `len()` ± 1 (one item lost, or one `None` item).
#[test]
fn round_trip_burn_to_ours_to_burn() {
    let items: Vec<ImageItem> = (0..7)
        .map(|i| ImageItem {
            image: (0..12).map(|p| (i * 12 + p) as f32 / 100.0).collect(),
            label: (9 - i) as u8,
        })
        .collect();
    let user = InMemDataset::new(items.clone());
    let ours = Dataset::from_burn(&user, 3, 4).unwrap();
    assert_eq!((ours.len, ours.rows, ours.cols), (7, 3, 4));
    let again: Vec<ImageItem> = (0..BurnDataset::len(&ours))
        .map(|i| BurnDataset::get(&ours, i).unwrap())
        .collect();
    assert_eq!(again, items);
    assert_eq!(BurnDataset::<ImageItem>::get(&ours, 7), None);
}

// Ours → burn → ours, through one of burn's own dataset transforms (a lazy window) and behind
// an `Arc<dyn …>`, as a user's pipeline would hold it.
// Catches: our `get` off by one or with a neighbour's label, `len()` ± 1, and `from_burn`
// reading in reverse or pushing labels twice. (Not `from_burn` reading until the first `None`
// instead of `0..len()`: the window ends with its `len()`; `from_burn_errors` catches that.)
#[test]
fn burn_transform_of_ours_reads_back_as_subset() {
    let ours = small_set();
    let window = PartialDataset::new(ours.clone(), 2, 7);
    let read = Dataset::from_burn(&window, 2, 3).unwrap();
    assert_eq!(read, ours.subset(&[2, 3, 4, 5, 6]).unwrap());

    let shared: Arc<dyn BurnDataset<ImageItem>> = Arc::new(ours.clone());
    assert_eq!(Dataset::from_burn(shared.as_ref(), 2, 3).unwrap(), ours);
    assert_eq!(Dataset::from_burn(&shared, 2, 3).unwrap(), ours);
}

/// A burn dataset that claims `len` items but has none at `hole`: a broken user loader.
struct Holey {
    len: usize,
    hole: usize,
}

impl BurnDataset<ImageItem> for Holey {
    fn get(&self, index: usize) -> Option<ImageItem> {
        (index < self.len && index != self.hole).then(|| ImageItem {
            image: vec![0.5; 4],
            label: 1,
        })
    }

    fn len(&self) -> usize {
        self.len
    }
}

// Catches: removing the empty-source check (`Dataset::new` accepts 0 samples); removing the
// per-item size check (the two wrong sizes 3 + 5 add up to 2 × 4, so `Dataset::new`'s total
// check alone passes them); skipping missing items (`continue`) or reading until the first
// `None` instead of failing; removing the zero-size check (a 0×4 image set of 1 item would be
// built); an infallible `reserve_exact` in place of `try_reserve_exact` (capacity-overflow
// panic / allocation abort on the absurd lengths); reading the items in reverse (the first
// bad item named would be the last).
#[test]
fn from_burn_errors() {
    let empty = InMemDataset::<ImageItem>::new(Vec::new());
    let err = Dataset::from_burn(&empty, 2, 2).unwrap_err();
    assert!(
        matches!(&err, DataError::InvalidParameter { name, reason }
            if name == "source" && reason.contains("empty")),
        "{err}"
    );

    let compensating = InMemDataset::new(vec![
        ImageItem {
            image: vec![0.0; 3],
            label: 0,
        },
        ImageItem {
            image: vec![0.0; 5],
            label: 1,
        },
    ]);
    let err = Dataset::from_burn(&compensating, 2, 2).unwrap_err();
    assert_eq!(
        err,
        DataError::ShapeMismatch {
            what: "image of item 0 of the burn dataset (2x2)".into(),
            expected: 4,
            got: 3,
        }
    );
    // The first bad item is named, whatever comes before it.
    let late = InMemDataset::new(vec![
        ImageItem {
            image: vec![0.0; 4],
            label: 0,
        },
        ImageItem {
            image: vec![0.0; 4],
            label: 0,
        },
        ImageItem {
            image: vec![0.0; 6],
            label: 0,
        },
    ]);
    let err = Dataset::from_burn(&late, 2, 2).unwrap_err();
    assert!(
        matches!(&err, DataError::ShapeMismatch { what, expected: 4, got: 6 }
            if what.contains("item 2")),
        "{err}"
    );

    let err = Dataset::from_burn(&Holey { len: 3, hole: 1 }, 2, 2).unwrap_err();
    assert!(
        matches!(&err, DataError::InvalidParameter { reason, .. }
            if reason.contains("no item at index 1") && reason.contains("len() of 3")),
        "{err}"
    );
    // Without the hole the same source reads fine (the error above is the hole's).
    assert_eq!(
        Dataset::from_burn(&Holey { len: 3, hole: 9 }, 2, 2)
            .unwrap()
            .len,
        3
    );

    let zero = InMemDataset::new(vec![ImageItem {
        image: Vec::new(),
        label: 0,
    }]);
    for (rows, cols) in [(0, 4), (4, 0)] {
        let err = Dataset::from_burn(&zero, rows, cols).unwrap_err();
        assert!(
            matches!(&err, DataError::InvalidParameter { name, .. } if name == "rows, cols"),
            "{err}"
        );
    }
    // rows * cols overflowing is an error, not a panic or a wrapped size.
    let err = Dataset::from_burn(&zero, usize::MAX, 2).unwrap_err();
    assert!(matches!(err, DataError::InvalidParameter { .. }), "{err}");
    // A source claiming an absurd length fails cleanly, before reading any item: `len * 4`
    // overflowing, or fitting but far beyond memory (no capacity panic, no allocation abort).
    for len in [usize::MAX / 2, usize::MAX / 16, 1 << 50] {
        let err = Dataset::from_burn(
            &Holey {
                len,
                hole: usize::MAX,
            },
            2,
            2,
        )
        .unwrap_err();
        assert!(
            matches!(&err, DataError::InvalidParameter { reason, .. }
                if reason.contains("too large")),
            "{err}"
        );
    }
}

/// Batches image items into tensors on the backend: `[n, rows * cols]` pixels and `[n]`
/// labels, read back to plain vectors for the checks.
#[derive(Clone, Debug)]
struct ImageBatcher;

#[derive(Clone, Debug)]
struct ImageBatch<Bk: Backend> {
    images: Tensor<Bk, 2>,
    labels: Tensor<Bk, 1, Int>,
}

impl<Bk: Backend> Batcher<Bk, ImageItem, ImageBatch<Bk>> for ImageBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &Bk::Device) -> ImageBatch<Bk> {
        let n = items.len();
        let f = items[0].image.len();
        let pixels: Vec<f32> = items.iter().flat_map(|it| it.image.clone()).collect();
        let labels: Vec<i64> = items.iter().map(|it| i64::from(it.label)).collect();
        ImageBatch {
            images: Tensor::from_data(TensorData::new(pixels, [n, f]), device),
            labels: Tensor::from_data(
                TensorData::new(labels, [n]).convert::<Bk::IntElem>(),
                device,
            ),
        }
    }
}

/// Runs `data` through burn's `DataLoader` (batch size `batch`, no shuffle, no worker threads)
/// and returns the batch sizes and the concatenated pixels and labels.
fn load_all(data: Dataset, batch: usize) -> (Vec<usize>, Vec<f32>, Vec<u8>) {
    let loader = DataLoaderBuilder::<B, ImageItem, ImageBatch<B>>::new(ImageBatcher)
        .batch_size(batch)
        .build(data);
    let (mut sizes, mut pixels, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for b in loader.iter() {
        let [n, _] = b.images.dims();
        sizes.push(n);
        pixels.extend(b.images.into_data().to_vec::<f32>().unwrap());
        labels.extend(
            b.labels
                .into_data()
                .convert::<i64>()
                .to_vec::<i64>()
                .unwrap()
                .into_iter()
                .map(|l| u8::try_from(l).unwrap()),
        );
    }
    (sizes, pixels, labels)
}

// Catches: `len()` returning `self.len - 1` or `self.len + 1` (`num_items` differs; see the
// module note); `get` off by one (one batch short, pixels shifted); a neighbour's label
// (labels out of order); `get` returning `Some` past the end (an empty image: the batcher's
// tensor shape check panics).
#[test]
fn our_dataset_through_burn_dataloader() {
    let ours = small_set();
    let loader_len = DataLoaderBuilder::<B, ImageItem, ImageBatch<B>>::new(ImageBatcher)
        .batch_size(4)
        .build(ours.clone())
        .num_items();
    assert_eq!(loader_len, 10);
    let (sizes, pixels, labels) = load_all(ours.clone(), 4);
    assert_eq!(sizes, [4, 4, 2]);
    assert_eq!(pixels, ours.images);
    assert_eq!(labels, ours.labels);

    // Batch size dividing the set, and larger than the set.
    assert_eq!(load_all(ours.clone(), 5).0, [5, 5]);
    let (sizes, pixels, labels) = load_all(ours.clone(), 64);
    assert_eq!(sizes, [10]);
    assert_eq!((pixels, labels), (ours.images, ours.labels));
}

// The bundled MNIST test split through the loader in batches of 1 000 (the last one short).
// Catches: `get` off by one, a neighbour's label, `get` `Some` past the end, at MNIST scale
// (not `len()` ± 1: this test does not look at `num_items`).
#[test]
fn bundled_mnist_through_burn_dataloader() {
    let test = Mnist::load_bundled().unwrap().test;
    let first = test.subset(&(0..2_500).collect::<Vec<_>>()).unwrap();
    let (sizes, pixels, labels) = load_all(first.clone(), 1_000);
    assert_eq!(sizes, [1_000, 1_000, 500]);
    assert_eq!(pixels, first.images);
    assert_eq!(labels, first.labels);
    assert_eq!(labels[..10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
}

// Catches: `ImageSet`'s `get` off by one or taking the label of the next image; `len()` of
// `pixels.len()` instead of the number of images.
#[test]
fn image_set_through_burn_trait() {
    let (c, h, w, n) = (3, 2, 2, 5);
    let pixels: Vec<f32> = (0..n * c * h * w).map(|v| v as f32).collect();
    let labels = vec![4, 0, 3, 1, 2];
    let names = (0..5).map(|k| format!("class{k}")).collect();
    let set = ImageSet::new(pixels.clone(), labels.clone(), names, c, h, w).unwrap();
    assert_eq!(BurnDataset::<ImageSetItem>::len(&set), n);
    for i in 0..n {
        let item: ImageSetItem = BurnDataset::get(&set, i).unwrap();
        assert_eq!(item.pixels, pixels[i * 12..(i + 1) * 12]);
        assert_eq!(item.label, labels[i]);
    }
    assert_eq!(BurnDataset::<ImageSetItem>::get(&set, n), None);
}

fn small_regression() -> RegressionSet {
    // 4 rows of 3 features: `len` and `dim` differ.
    RegressionSet::new(
        vec![
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0,
        ],
        vec![0.5, -1.5, 2.5, 3.5],
        3,
        vec!["a".into(), "b".into(), "c".into()],
    )
    .unwrap()
}

// Catches: `RegressionSet`'s `get` off by one or with the target of the next row; `len()`
// returning `dim` (hence 4 rows of 3 features); `from_burn` dropping the per-item check (items
// of 2 and 4 features add up to 2 × 3), the empty check, or the no-feature check, or reading
// the rows in reverse.
#[test]
fn regression_set_both_ways() {
    let set = small_regression();
    assert_eq!(BurnDataset::<RegressionItem>::len(&set), 4);
    let item: RegressionItem = BurnDataset::get(&set, 1).unwrap();
    assert_eq!(
        item,
        RegressionItem {
            features: vec![4.0, 5.0, 6.0],
            target: -1.5
        }
    );
    assert_eq!(BurnDataset::<RegressionItem>::get(&set, 4), None);
    let back = RegressionSet::from_burn(&set, set.feature_names.clone()).unwrap();
    assert_eq!(back, set);

    let names = || vec!["x".to_string(), "y".to_string(), "z".to_string()];
    let err = RegressionSet::from_burn(&InMemDataset::new(Vec::new()), names()).unwrap_err();
    assert!(matches!(err, DataError::InvalidParameter { .. }), "{err}");
    let odd = InMemDataset::new(vec![
        RegressionItem {
            features: vec![1.0, 2.0],
            target: 0.0,
        },
        RegressionItem {
            features: vec![1.0, 2.0, 3.0, 4.0],
            target: 0.0,
        },
    ]);
    let err = RegressionSet::from_burn(&odd, names()).unwrap_err();
    assert_eq!(
        err,
        DataError::ShapeMismatch {
            what: "features of item 0 of the burn dataset".into(),
            expected: 3,
            got: 2,
        }
    );
    let err = RegressionSet::from_burn(&set, Vec::new()).unwrap_err();
    assert!(
        matches!(&err, DataError::InvalidParameter { name, .. } if name == "feature_names"),
        "{err}"
    );
}

// Catches: `SparseDataset`'s `get` without the bounds check (calling `row` first: it panics
// past the end instead of returning `None`); `get` returning the next row's entries; `len()`
// of `indptr.len()` (one too many).
#[test]
fn sparse_set_through_burn_trait() {
    let set = SparseDataset {
        labels: vec![1.0, -1.0, 1.0],
        indptr: vec![0, 2, 2, 3],
        indices: vec![0, 3, 1],
        values: vec![0.5, 2.0, -1.0],
        n_features: 4,
    };
    assert_eq!(BurnDataset::<SparseItem>::len(&set), 3);
    let items: Vec<SparseItem> = BurnDataset::iter(&set).collect();
    assert_eq!(
        items,
        [
            SparseItem {
                indices: vec![0, 3],
                values: vec![0.5, 2.0],
                label: 1.0
            },
            SparseItem {
                indices: vec![],
                values: vec![],
                label: -1.0
            },
            SparseItem {
                indices: vec![1],
                values: vec![-1.0],
                label: 1.0
            },
        ]
    );
    assert_eq!(BurnDataset::<SparseItem>::get(&set, 3), None);
    assert_eq!(BurnDataset::<SparseItem>::get(&set, usize::MAX), None);
}

fn small_sampler() -> EpisodeSampler {
    // 6 classes of 4 images; 3-way 1-shot, 2 query images per class.
    let classes = (0..6).map(|c| (4 * c..4 * c + 4).collect()).collect();
    EpisodeSampler::new(classes, EpisodeSpec::new(3, 1, 2), 11).unwrap()
}

// Catches: `EpisodeRange::get` ignoring `start` (episodes of 0..len instead) or adding 1; the
// bounds check dropped (`get(len)` is `Some`); `len()` returning `len + 1`.
#[test]
fn episode_range_through_burn_trait() {
    let sampler = small_sampler();
    let range = EpisodeRange::new(sampler.clone(), 40, 6);
    assert_eq!(BurnDataset::len(&range), 6);
    for k in 0..6 {
        assert_eq!(range.get(k), Some(sampler.episode(40 + k as u64)), "{k}");
    }
    assert_eq!(range.get(6), None);
    // Same episodes as drawing from a sampler moved to episode 40.
    let mut stream = sampler.clone();
    stream.skip_to(40);
    let drawn = stream.sample_batch(6);
    assert_eq!(BurnDataset::iter(&range).collect::<Vec<_>>(), drawn);
}

/// Meta-batches of episodes: plain vectors, no tensors.
#[derive(Clone, Debug)]
struct TaskBatcher;

impl<Bk: Backend> Batcher<Bk, bilevel_data::Episode, Vec<bilevel_data::Episode>> for TaskBatcher {
    fn batch(
        &self,
        items: Vec<bilevel_data::Episode>,
        _device: &Bk::Device,
    ) -> Vec<bilevel_data::Episode> {
        items
    }
}

// An epoch of 10 tasks through burn's loader in meta-batches of 4 reproduces the sampler's
// stream, meta-batch by meta-batch.
// Catches: `EpisodeRange::get` ignoring `start` or adding 1; `len()` returning `len + 1`
// (`num_items`). Without the bounds check this test never ends (see the module note).
#[test]
fn episode_range_through_burn_dataloader() {
    let sampler = small_sampler();
    let loader = DataLoaderBuilder::<B, _, _>::new(TaskBatcher)
        .batch_size(4)
        .build(EpisodeRange::new(sampler.clone(), 7, 10));
    assert_eq!(loader.num_items(), 10);
    let batches: Vec<Vec<bilevel_data::Episode>> = loader.iter().collect();
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 2]);
    let mut stream = sampler;
    stream.skip_to(7);
    for batch in batches {
        assert_eq!(batch, stream.sample_batch(batch.len()));
    }
    assert_eq!(stream.episodes_drawn(), 17);
}
