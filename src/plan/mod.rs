//! What userspace has put in the maps, and the plan that takes the maps from
//! one configuration to the next. Pure logic: plans are written through the
//! [`Maps`] trait, which `datapath` implements.
//!
//! Identity: a frontend is its `Listen` (address, port); it keeps its id for
//! as long as it is configured. A backend is its (address, port) within its
//! frontend; it keeps its slot (and so its counters) for as long as it is
//! configured there.
//!
//! Atomicity: a frontend whose backends, weights, scheduler or settings
//! change, or whose backends health takes out or puts back, gets a new ring
//! in the table it does not use, and only then is each of its frontend
//! entries replaced, in one map update (see [`Plan::ops`] for the order).
//! Slots and ids freed by a plan are not reused within that plan, so while
//! it is written a packet that read the old ring never lands on a slot that
//! now means something else. The next plan may reuse them, and nothing
//! makes it wait (a health transition may follow a reload at once): by then
//! every frontend entry reads its new ring ([`MapWriter`] finishes a plan
//! before it plans the next), and a pin to a slot since reused by another
//! backend is not followed (the slot's `ident` names who holds it).
//!
//! Files: `ops.rs` (the plan as ordered map writes), `writer.rs` (plans
//! that resume after a failure), `state.rs` (what the maps hold) and
//! `planner.rs` (its steps), `moves.rs` (reply keys changing frontend),
//! `values.rs` (each map's values), `port_flags.rs`, `down.rs` (the health
//! checks' view), `hashes.rs` (what every balancer computes alike); the
//! rings: `rr.rs`, `maglev.rs`; `flow_hash.rs` (the datapath's flow hash).

pub mod flow_hash;
pub mod maglev;
pub mod rr;

mod down;
mod hashes;
mod moves;
mod ops;
mod port_flags;
mod state;
mod values;
mod writer;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod test_configs;

pub use down::{all_down, effective, Down};
pub use hashes::backend_ident;
pub use ops::{apply_from, Interrupted, Maps, Op, Plan};
pub use state::{BackendId, Layout, State};
pub use writer::MapWriter;
