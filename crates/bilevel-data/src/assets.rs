//! Where the workspace's bundled data lives.
//!
//! By default `assets/` at the workspace root, found from this crate's manifest directory at
//! compile time (`crates/bilevel-data/../../assets`). The environment variable
//! [`ASSETS_ENV`] (`BILEVEL_ASSETS`) overrides it at run time, e.g. for an installed binary or a
//! copy of the data elsewhere; it names the folder that *contains* `mnist/`.

use std::ffi::OsString;
use std::path::PathBuf;

/// Environment variable that overrides the assets folder.
pub const ASSETS_ENV: &str = "BILEVEL_ASSETS";

/// The assets folder: `$BILEVEL_ASSETS` if set and non-empty, else the workspace's `assets/`.
pub fn assets_dir() -> PathBuf {
    assets_dir_from(std::env::var_os(ASSETS_ENV))
}

/// [`assets_dir`] with the override passed in rather than read from the environment.
pub fn assets_dir_from(override_dir: Option<OsString>) -> PathBuf {
    match override_dir {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_assets_dir(),
    }
}

/// The workspace's own `assets/` folder, ignoring the override.
pub fn workspace_assets_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
        .join("assets")
}
