//! The certificate authority service: joiners trade a CSR and a join token for a
//! certificate; holders renew theirs. Issued certificates are recorded in the store,
//! which also backs revocation.

mod issue;
mod own_certificate;
mod revocations;
pub mod rotation;
mod service;

pub use issue::{check_csr, issue_and_record, sign_leaf, IssueError};
pub use own_certificate::{keep_renewed, Holder};
pub use revocations::StoreRevocations;
pub use service::CaService;
