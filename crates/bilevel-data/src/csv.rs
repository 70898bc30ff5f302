//! Delimited text tables (CSV). (in progress)
