//! `lnswarm.v1.Control`: the operator API behind `lnswarmctl`.

mod service;

pub use service::ControlService;
