//! flowforge-guidance (work in progress).
