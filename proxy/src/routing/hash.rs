//! The small, stable hash session affinity needs: the same session must map to the same
//! endpoint in every replica and after every upgrade, so it cannot be std's `DefaultHasher`
//! (unspecified across releases). FNV-1a for the bytes and the splitmix64 finaliser to combine,
//! hand-written because both are a few lines and a crate for them would be all overhead.

/// FNV-1a, 64-bit.
pub fn of(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A well-mixed combination of two hashes (splitmix64's finaliser over their xor-rotate).
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_its_reference_values() {
        assert_eq!(of(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(of(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn mixing_spreads_sessions_evenly_over_endpoints() {
        let endpoints = [of(b"e1"), of(b"e2"), of(b"e3")];
        let mut wins = [0u32; 3];
        for s in 0..3000u32 {
            let key = of(&s.to_le_bytes());
            let best = (0..3).max_by_key(|&i| mix(key, endpoints[i])).unwrap_or(0);
            wins[best] += 1;
        }
        assert!(wins.iter().all(|&w| (800..1200).contains(&w)), "{wins:?}");
    }
}
