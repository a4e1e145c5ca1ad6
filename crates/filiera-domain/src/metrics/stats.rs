//! Summary statistics of durations in days, and an order-preserving map for the documents.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `{count, mean, median, p90}` of whole-day durations. `mean`, `median` and `p90` are `null`
/// when `count` is 0. Percentiles interpolate linearly between the closest ranks (numpy's
/// default, PostgreSQL's `percentile_cont`): the `p`-th percentile of sorted `x[0..n]` is at
/// rank `p·(n−1)`, e.g. the median of `[10, 20, 30, 40]` is 25 and its p90 is 37.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stats {
    pub count: u64,
    pub mean: Option<f64>,
    pub median: Option<f64>,
    pub p90: Option<f64>,
}

impl Stats {
    /// The statistics of `days`, which it reorders in place. The percentiles are found by
    /// selection rather than by sorting: only the values at the two ranks around each
    /// percentile are read, so the result is [`percentile`]'s over the sorted days, in linear
    /// time (a region's open spells are a hundred thousand samples, taken once per document).
    pub fn from_days(days: &mut [u32]) -> Self {
        if days.is_empty() {
            return Self::default();
        }
        let sum: u64 = days.iter().map(|&d| u64::from(d)).sum();
        Self {
            count: days.len() as u64,
            mean: Some(sum as f64 / days.len() as f64),
            median: select_percentile(days, 0.5),
            p90: select_percentile(days, 0.9),
        }
    }
}

/// The `p`-th percentile (0 ≤ p ≤ 1) of sorted `sorted`, interpolating linearly between the
/// closest ranks; `None` when empty.
pub fn percentile(sorted: &[u32], p: f64) -> Option<f64> {
    let ranks = Ranks::of(sorted.len(), p)?;
    Some(ranks.interpolate(sorted[ranks.lo], sorted[ranks.hi]))
}

/// [`percentile`] of `days` in any order, which it reorders: the value at the lower rank is
/// selected, and the one at the upper rank (the next, when they differ) is the smallest above
/// it.
fn select_percentile(days: &mut [u32], p: f64) -> Option<f64> {
    let ranks = Ranks::of(days.len(), p)?;
    let (_, &mut low, above) = days.select_nth_unstable(ranks.lo);
    let high = if ranks.hi == ranks.lo {
        low
    } else {
        above.iter().copied().min().unwrap_or(low)
    };
    Some(ranks.interpolate(low, high))
}

/// The ranks around `p·(n−1)` that a percentile interpolates between.
struct Ranks {
    rank: f64,
    lo: usize,
    hi: usize,
}

impl Ranks {
    fn of(len: usize, p: f64) -> Option<Self> {
        let last = len.checked_sub(1)?;
        let rank = p.clamp(0.0, 1.0) * last as f64;
        Some(Self {
            rank,
            lo: rank.floor() as usize,
            hi: (rank.ceil() as usize).min(last),
        })
    }

    fn interpolate(&self, low: u32, high: u32) -> f64 {
        let (low, high) = (f64::from(low), f64::from(high));
        low + (high - low) * (self.rank - self.lo as f64)
    }
}

/// A map that keeps its keys in the order given (catalogue or documentation order), serialized
/// as a JSON object, without switching serde_json to `preserve_order` for everyone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> OrderedMap<V> {
    /// The value under `key`, if present.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl<V: Serialize> Serialize for OrderedMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for OrderedVisitor<V> {
            type Value = OrderedMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0));
                while let Some(entry) = access.next_entry()? {
                    entries.push(entry);
                }
                Ok(OrderedMap(entries))
            }
        }

        deserializer.deserialize_map(OrderedVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let stats = Stats::from_days(&mut [40, 10, 30, 20]);
        assert_eq!(stats.count, 4);
        // mean (10+20+30+40)/4 = 25; median rank 0.5·3 = 1.5 → 20 + 0.5·10 = 25;
        // p90 rank 0.9·3 = 2.7 → 30 + 0.7·10 = 37.
        assert!(close(stats.mean, 25.0));
        assert!(close(stats.median, 25.0));
        assert!(close(stats.p90, 37.0));
        // One value: every statistic is that value.
        let one = Stats::from_days(&mut [7]);
        assert!(close(one.mean, 7.0) && close(one.median, 7.0) && close(one.p90, 7.0));
        // Odd count: median is the middle; p90 of [1,2,3,4,100] at rank 3.6 → 4 + 0.6·96 = 61.6.
        let odd = Stats::from_days(&mut [100, 1, 3, 2, 4]);
        assert!(close(odd.median, 3.0));
        assert!(close(odd.p90, 61.6));
        assert!(close(odd.mean, 22.0));
    }

    /// Selection gives exactly what sorting gives, whatever the order and the duplicates.
    #[test]
    fn selected_percentiles_equal_sorted_ones() {
        let mut seed = 7_u64;
        for len in (1..40).chain([97, 1000, 4099]) {
            let mut days: Vec<u32> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    ((seed >> 33) % 50) as u32
                })
                .collect();
            let mut sorted = days.clone();
            sorted.sort_unstable();
            let stats = Stats::from_days(&mut days);
            for (value, p) in [(stats.median, 0.5), (stats.p90, 0.9)] {
                let expected = percentile(&sorted, p);
                assert_eq!(
                    value.map(f64::to_bits),
                    expected.map(f64::to_bits),
                    "{len} at {p}"
                );
            }
        }
    }

    #[test]
    fn empty_stats_are_null() {
        let stats = Stats::from_days(&mut []);
        assert_eq!(
            serde_json::to_value(&stats).unwrap(),
            serde_json::json!({"count": 0, "mean": null, "median": null, "p90": null})
        );
    }

    #[test]
    fn ordered_map_keeps_its_order() {
        let map = OrderedMap(vec![("b".to_owned(), 1), ("a".to_owned(), 2)]);
        let text = serde_json::to_string(&map).unwrap();
        assert_eq!(text, r#"{"b":1,"a":2}"#);
        let back: OrderedMap<i32> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, map);
        assert_eq!(back.get("a"), Some(&2));
        assert_eq!(back.keys().collect::<Vec<_>>(), vec!["b", "a"]);
    }
}
