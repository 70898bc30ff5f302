//! Registry of fetchable data sets: sources, files and SHA-256 hashes. (in progress)
