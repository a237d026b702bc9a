//! The measurements behind the report, one file per question. Each returns a struct of
//! measured values; [`crate::report`] turns them into findings and tables.

pub mod api_load;
pub mod counting;
pub mod depth;
pub mod drift;
pub mod ties;
pub mod walk;
