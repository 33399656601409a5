//! The command line of `remoteproxy-monitor`, as a library so that the package's man page and
//! shell completions are generated from the very flags the binary parses. The live view itself
//! is the binary's (`main.rs`).

#![forbid(unsafe_code)]

pub mod args;
