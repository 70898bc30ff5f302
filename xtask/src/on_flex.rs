//! The hypergrad-check modules on `Autodiff<Flex>` (f64).

checks_on!(
    bilevel_core::backend::FlexAutodiff,
    bilevel_core::backend::flex_device
);
