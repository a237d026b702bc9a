//! The measurements behind the report, one file per question. Each returns a struct of
//! measured values and knows how to add itself to the report.

pub mod counting;
pub mod depth;
pub mod drift;
pub mod ties;
pub mod walk;
