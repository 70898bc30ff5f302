//! `bilevel`: run a TOML experiment config (skeleton; see issue #7).

fn main() {}
