//! `nightjar import blackbox` (filled in below).
