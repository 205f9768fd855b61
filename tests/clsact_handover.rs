//! On kernels without tcx (before 6.6) the reply program is a clsact filter
//! at a fixed handle and priority, which a udplb started with `--force`
//! replaces in place. The replaced udplb then stops (it sees its XDP
//! program gone): its exit must not detach the filter, which is no longer
//! its own. Shown here on clsact directly (this kernel has tcx, so udplb
//! itself would not use clsact): two loaded programs, the second attached
//! over the first, the first's attachment dropped.

use udplb_testkit as support;

use support::netns::Netns;
use udplb::datapath::{attach, Datapath};

#[test]
fn a_replaced_clsact_filter_is_not_detached_by_its_old_owner() {
    let ns = Netns::new("clsact");
    let filters = || ns.exec(&["tc", "filter", "show", "dev", "lo", "egress"]);
    // The program id tc shows on lo's egress ("... udplb_egress ... id N").
    let shown = || {
        let text = filters();
        let id = text.split_whitespace().skip_while(|w| *w != "id").nth(1);
        id.map(str::to_string)
    };
    let (old, new) = (Datapath::load().unwrap(), Datapath::load().unwrap());
    ns.enter(|| {
        let replaced = attach::attach_clsact(old.egress_prog(), "lo", 1).unwrap();
        let old_id = shown().expect("the old program attached");
        let current = attach::attach_clsact(new.egress_prog(), "lo", 1).unwrap();
        let new_id = shown().expect("the new program attached");
        assert_ne!(old_id, new_id, "{}", filters());
        drop(replaced);
        assert_eq!(
            shown().as_ref(),
            Some(&new_id),
            "the old owner detached the new program: {}",
            filters()
        );
        drop(current);
        assert_eq!(shown(), None, "{}", filters());
    });
}
