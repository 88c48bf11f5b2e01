//! The authoritative DNS server for the public zone: hickory's server for
//! UDP and TCP on the configured addresses, answering every query from the
//! pure [`Zone`] (`dns.rs`). Updates (pending challenges) swap the zone.

use super::{Data, QType, Rcode, Response, Rr, Zone};
use crate::shared::Shared;
use crate::sys::listen::{self, ListenError};
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, NS, SOA, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub struct ZoneHandler {
    pub zone: Arc<Shared<Zone>>,
}

fn fqdn(n: &str) -> Option<Name> {
    Name::from_ascii(format!("{n}.")).ok()
}

fn record(rr: &Rr) -> Option<Record> {
    let data = match &rr.data {
        Data::A(a) => RData::A(A(*a)),
        Data::Aaaa(a) => RData::AAAA(AAAA(*a)),
        Data::Txt(t) => RData::TXT(TXT::new(vec![t.clone()])),
        Data::Ns(n) => RData::NS(NS(fqdn(n)?)),
        Data::Soa {
            mname,
            rname,
            serial,
            minimum,
        } => RData::SOA(SOA::new(
            fqdn(mname)?,
            fqdn(rname)?,
            *serial,
            3600,
            600,
            604800,
            *minimum,
        )),
    };
    Some(Record::from_rdata(fqdn(&rr.name)?, rr.ttl, data))
}

fn qtype(t: RecordType) -> QType {
    match t {
        RecordType::A => QType::A,
        RecordType::AAAA => QType::Aaaa,
        RecordType::TXT => QType::Txt,
        RecordType::NS => QType::Ns,
        RecordType::SOA => QType::Soa,
        RecordType::ANY => QType::Any,
        other => QType::Other(u16::from(other)),
    }
}

/// What the server records for a response that could not be sent.
fn unsent(request: &Request) -> ResponseInfo {
    ResponseInfo::from(hickory_server::proto::op::Header {
        metadata: Metadata::response_from_request(&request.metadata),
        counts: Default::default(),
    })
}

#[async_trait::async_trait]
impl RequestHandler for ZoneHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::new(&request.queries, None);
        let query = match request.queries.queries() {
            [q] => q.clone(),
            _ => {
                let r = builder.error_msg(&request.metadata, ResponseCode::FormErr);
                return response_handle
                    .send_response(r)
                    .await
                    .unwrap_or_else(|_| unsent(request));
            }
        };
        let name = query.name().to_string();
        let answer: Response = self.zone.read().answer(&name, qtype(query.query_type()));
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = answer.authoritative;
        metadata.response_code = match answer.rcode {
            Rcode::NoError => ResponseCode::NoError,
            Rcode::NxDomain => ResponseCode::NXDomain,
            Rcode::Refused => ResponseCode::Refused,
        };
        let convert = |v: &[Rr]| v.iter().filter_map(record).collect::<Vec<_>>();
        let (answers, authority, additional) = (
            convert(&answer.answers),
            convert(&answer.authority),
            convert(&answer.additional),
        );
        let response = builder.build(
            metadata,
            answers.iter(),
            std::iter::empty(),
            authority.iter(),
            additional.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!("dns: sending a response: {e}");
                unsent(request)
            }
        }
    }
}

/// Bind UDP and TCP on every address (errors name it), then serve.
pub async fn start(zone: Arc<Shared<Zone>>, listen: &[SocketAddr]) -> Result<(), ListenError> {
    let mut server = hickory_server::Server::new(ZoneHandler { zone });
    for addr in listen {
        let udp = listen::udp(*addr)?;
        let tcp = listen::tcp(*addr)?;
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64 * 1024);
    }
    tokio::spawn(async move {
        if let Err(e) = server.block_until_done().await {
            tracing::error!("dns server: {e}");
        }
    });
    Ok(())
}
