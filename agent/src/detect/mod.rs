//! Resource and attribute detection.
