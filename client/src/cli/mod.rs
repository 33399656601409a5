//! The command line client's own parts: flags and modes.

pub mod args;
pub mod modes;
