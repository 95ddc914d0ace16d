//! Who may call what. One declarative table maps every RPC to the callers it admits
//! (as SwarmKit's `tls_authorization` option does), and one tower layer enforces it
//! before any handler runs.

mod layer;
pub mod limits;
mod table;

pub use layer::{caller, require_owner, require_reader, AuthzLayer, AuthzService, NodeScope};
pub use table::{access_for, Access, TABLE};
