//! The five scenarios of the suite, each on a fresh broker process, and what they share.

pub mod abuse;
pub mod churn;
pub mod cluster;
pub mod common;
pub mod faults;
pub mod load;
