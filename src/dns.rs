//! The DNS messages of the `dns` health check, encoded and decoded by
//! hickory-proto (the DNS library of the Hickory project): a query for a
//! name and type, and the check of a response against it (pure); and a
//! random query ID (from /dev/urandom).

use std::str::FromStr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use crate::error::UsageError;
use crate::usage;

/// A query ID nobody can guess (RFC 5452: with the probe's random source
/// port, what keeps a forged response from passing for the answer): two
/// bytes from the kernel's CSPRNG.
pub fn random_id() -> std::io::Result<u16> {
    use std::io::Read;
    let mut id = [0u8; 2];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut id)?;
    Ok(u16::from_ne_bytes(id))
}

/// A recursive-desired query with `id` for `name` (`.`, `example.org`) and
/// `qtype` (`NS`, `A`, `SOA`...), in wire format.
pub fn query(id: u16, name: &str, qtype: &str) -> Result<Vec<u8>, UsageError> {
    let name = Name::from_ascii(name)
        .ok()
        .filter(|n| !name.is_empty() && n.num_labels() <= 127)
        .ok_or_else(|| usage!("'{name}' is not a DNS name"))?;
    let qtype = RecordType::from_str(&qtype.to_ascii_uppercase())
        .ok()
        .filter(|t| !matches!(t, RecordType::Unknown(_)))
        .ok_or_else(|| usage!("'{qtype}' is not a DNS record type (e.g. NS, A, SOA)"))?;
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name, qtype));
    m.to_vec().map_err(|e| {
        usage!(
            "encoding a DNS query for '{name}': {e}",
            name = m.queries()[0].name()
        )
    })
}

/// Whether `reply` answers the query with `id`: a response with that ID
/// (and, if `noerror`, RCODE NOERROR). The error says why not.
pub fn check_response(reply: &[u8], id: u16, noerror: bool) -> Result<(), String> {
    let m = Message::from_vec(reply).map_err(|e| format!("not a DNS message: {e}"))?;
    if m.message_type() != MessageType::Response || m.id() != id {
        return Err(format!("not the response to its query (ID {})", m.id()));
    }
    match m.response_code() {
        ResponseCode::NoError => Ok(()),
        rcode if noerror => Err(format!("RCODE {rcode}")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_and_its_response() {
        let q = query(0x1234, ".", "ns").unwrap();
        // Header: ID, flags RD, one question; then the root name, NS, IN.
        assert_eq!(&q[..6], &[0x12, 0x34, 0x01, 0x00, 0x00, 0x01]);
        assert_eq!(&q[12..], &[0, 0, 2, 0, 1]);
        let mut m = Message::from_vec(&q).unwrap();
        m.set_message_type(MessageType::Response);
        let ok = m.to_vec().unwrap();
        assert_eq!(check_response(&ok, 0x1234, true), Ok(()));
        assert!(check_response(&ok, 0x1235, false).is_err(), "another ID");
        assert!(check_response(&q, 0x1234, false).is_err(), "a query");
        m.set_response_code(ResponseCode::Refused);
        let refused = m.to_vec().unwrap();
        assert_eq!(check_response(&refused, 0x1234, false), Ok(()));
        assert!(check_response(&refused, 0x1234, true)
            .unwrap_err()
            .contains("Refused"));
        assert!(check_response(b"junk", 1, false).is_err());
    }

    #[test]
    fn query_ids_are_random() {
        // 16 draws of 16 bits: all equal by chance with probability 2^-240.
        let ids: Vec<u16> = (0..16).map(|_| random_id().unwrap()).collect();
        assert!(ids.iter().any(|&i| i != ids[0]), "{ids:?}");
    }

    #[test]
    fn bad_names_and_types() {
        assert!(query(1, "example.org", "A").is_ok());
        assert!(query(1, "", "A").unwrap_err().0.contains("not a DNS name"));
        assert!(query(1, "a..b", "A")
            .unwrap_err()
            .0
            .contains("not a DNS name"));
        assert!(query(1, ".", "BOGUS")
            .unwrap_err()
            .0
            .contains("record type"));
    }
}
