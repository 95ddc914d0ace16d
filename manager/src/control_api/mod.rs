//! `lnswarm.v1.Control`: the operator API behind `lnswarmctl`.

mod service;
mod tasks;

pub use service::ControlService;
