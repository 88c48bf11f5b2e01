//! What the certificate worker orders from: an ACME directory in the agent,
//! a recording fake in the worker's tests (so an order fails and crashes at
//! each of its steps in-process, as the supervisor's operations do).

use super::acme::Acme;
use super::{CertError, Issued};
use async_trait::async_trait;

#[async_trait]
pub trait Authority: Send + Sync {
    /// Named in logs and stored with each certificate.
    fn directory(&self) -> &str;
    /// Whether ordering for `names` can succeed now (their DNS).
    async fn precheck(&self, names: &[String]) -> Result<(), CertError>;
    /// A certificate for `names`, or why not.
    async fn issue(&self, names: &[String]) -> Result<Issued, CertError>;
}

#[async_trait]
impl Authority for Acme {
    fn directory(&self) -> &str {
        &self.directory
    }
    async fn precheck(&self, names: &[String]) -> Result<(), CertError> {
        Acme::precheck(self, names).await
    }
    async fn issue(&self, names: &[String]) -> Result<Issued, CertError> {
        Acme::issue(self, names).await
    }
}
