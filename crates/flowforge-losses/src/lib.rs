//! flowforge-losses (work in progress).
