//! Seeded index batch samplers. (in progress)
