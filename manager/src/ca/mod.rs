//! The certificate authority service: joiners trade a CSR and a join token for a
//! certificate; holders renew theirs. Issued certificates are recorded in the store,
//! which also backs revocation.

mod revocations;
mod service;

pub use revocations::StoreRevocations;
pub use service::{check_csr, issue_and_record, sign_leaf, CaService};
