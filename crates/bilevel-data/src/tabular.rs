//! Named tabular data sets (wine-quality, diabetes, digits). (in progress)
