//! Turns a validated [`Config`] into the entries of the datapath's maps.
//! Pure logic: `datapath.rs` writes what this computes.

use crate::abi::{Backend, Endpoint, Frontend, ReplyTarget, MAX_BACKENDS};
use crate::config::Config;

/// Everything the datapath needs, as (key, value) pairs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tables {
    pub frontends: Vec<(Endpoint, Frontend)>,
    /// (index into backend_slots, backend).
    pub slots: Vec<(u32, Backend)>,
    pub replies: Vec<(Endpoint, ReplyTarget)>,
}

/// Index of a backend's counters in backend_counters.
pub fn backend_counter(frontend_id: usize, backend: usize) -> u32 {
    (frontend_id * MAX_BACKENDS + backend) as u32
}

/// Frontend `id` owns backend tables 2*id and 2*id+1; `generation` picks
/// one, so a new backend set can be written beside the live one.
pub fn table_of(frontend_id: usize, generation: u32) -> u32 {
    (2 * frontend_id) as u32 + (generation & 1)
}

impl Tables {
    pub fn build(config: &Config, generation: u32) -> Tables {
        let mut t = Tables::default();
        for (id, fe) in config.frontends.iter().enumerate() {
            let table = table_of(id, generation);
            for key in fe.listen.endpoints() {
                let value = Frontend {
                    id: id as u32,
                    table,
                    backend_count: fe.backends.len() as u32,
                    pad: 0,
                };
                t.frontends.push((key, value));
                // Replies come from the address the client sent to, so a
                // backend is keyed like its frontend, on the backend's port;
                // only the port is rewritten back.
                for &port in &fe.backends {
                    let mut target = ReplyTarget {
                        frontend: key,
                        frontend_id: id as u32,
                    };
                    target.frontend.addr_be = [0; 4];
                    t.replies.push((key.with_port(port), target));
                }
            }
            for (i, &port) in fe.backends.iter().enumerate() {
                // A local backend: port only; the family is informational.
                let ep = Endpoint {
                    port_be: port.to_be(),
                    ..Endpoint::default()
                };
                let slot = table * MAX_BACKENDS as u32 + i as u32;
                t.slots.push((
                    slot,
                    Backend {
                        ep,
                        counter: backend_counter(id, i),
                    },
                ));
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_tables() {
        let c = Config::from_specs(&["9875=9876,9877,9878"]).unwrap();
        let t = Tables::build(&c, 0);
        assert_eq!(t.frontends.len(), 2, "IPv4 and IPv6 wildcard");
        for (key, fe) in &t.frontends {
            assert_eq!(key.port(), 9875);
            assert_eq!(key.addr_be, [0; 4]);
            assert_eq!((fe.id, fe.table, fe.backend_count), (0, 0, 3));
        }
        let ports: Vec<u16> = t.slots.iter().map(|(_, b)| b.ep.port()).collect();
        assert_eq!(ports, vec![9876, 9877, 9878]);
        let slots: Vec<u32> = t.slots.iter().map(|(s, _)| *s).collect();
        assert_eq!(slots, vec![0, 1, 2]);
        assert_eq!(t.replies.len(), 6);
        for (key, target) in &t.replies {
            assert!([9876, 9877, 9878].contains(&key.port()));
            assert_eq!(target.frontend.port(), 9875);
            assert_eq!(target.frontend.family, key.family);
        }
    }

    #[test]
    fn second_frontend_uses_its_own_tables_and_counters() {
        let c = Config::from_specs(&["9875=9876", "198.18.0.1:53=5353,5354"]).unwrap();
        let t = Tables::build(&c, 1);
        let (key, fe) = t.frontends.last().unwrap();
        assert_eq!(
            key,
            &Endpoint::ipv4(Some("198.18.0.1".parse().unwrap()), 53)
        );
        assert_eq!((fe.id, fe.table, fe.backend_count), (1, 3, 2));
        let (slot, be) = t.slots.last().unwrap();
        assert_eq!(*slot, 3 * MAX_BACKENDS as u32 + 1);
        assert_eq!(be.counter, backend_counter(1, 1));
        // The exact frontend's replies are keyed on its address.
        let (rkey, _) = t.replies.last().unwrap();
        assert_eq!(
            rkey,
            &Endpoint::ipv4(Some("198.18.0.1".parse().unwrap()), 5354)
        );
    }
}
