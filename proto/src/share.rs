//! A data plane's share of a limit in a fleet (the `FleetShare` rule), which both planes
//! compute: slot `slot` of `of` admits `limit / of`, plus one unit while `slot < limit % of`, so
//! the shares of a fleet add up to each limit exactly.

/// Slot `slot`'s share of `limit` in a fleet of `of` (`of` 0 counts as 1; a slot beyond the
/// fleet as the last).
pub fn share_of_limit(limit: u64, slot: u32, of: u32) -> u64 {
    let of = u64::from(of.max(1));
    let slot = u64::from(slot).min(of - 1);
    limit / of + u64::from(slot < limit % of)
}

#[cfg(test)]
mod tests {
    use super::share_of_limit;

    #[test]
    fn shares_add_up_to_the_limit() {
        for limit in [0, 1, 2, 59, 60, 61, 1_000_000_007] {
            for of in 1..=7 {
                let sum: u64 = (0..of).map(|slot| share_of_limit(limit, slot, of)).sum();
                assert_eq!(sum, limit, "limit {limit} over {of}");
            }
        }
        assert_eq!(share_of_limit(10, 0, 0), 10, "no fleet: the whole limit");
        assert_eq!(
            share_of_limit(10, 9, 3),
            3,
            "beyond the fleet: the last slot"
        );
    }
}
