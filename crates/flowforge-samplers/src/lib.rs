//! flowforge-samplers (work in progress).
